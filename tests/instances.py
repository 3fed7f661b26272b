"""Real store instances for tests: `manage.py kvstore_consume` and gunicorn as
subprocesses, configured only by environment, exactly as a user runs them."""

import dataclasses
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid

import requests

from kvstore import conf
from tests.brokers import ROOT, free_port

PYTHON = sys.executable
GUNICORN = os.path.join(os.path.dirname(sys.executable), "gunicorn")


def isolated_settings(bootstrap, **fields):
    """StoreSettings of a fresh namespace set: own topic prefix and group id."""
    unique = uuid.uuid4().hex[:10]
    defaults = dict(
        bootstrap_servers=tuple(bootstrap.split(",")),
        topic_prefix=f"test-{unique}.",
        group_id=f"test-{unique}",
        partitions=3,
        session_timeout_ms=3000,
    )
    return dataclasses.replace(conf.from_environ({}), **{**defaults, **fields})


def pgrep(*args):
    """The ids of the processes `pgrep *args` finds (`-P PID`: its children)."""
    found = subprocess.run(["pgrep", *args], capture_output=True, text=True).stdout
    return [int(pid) for pid in found.split()]


def environment(settings, **extra):
    env = dict(
        os.environ,
        DJANGO_SETTINGS_MODULE="config.settings",
        KAFKA_BOOTSTRAP_SERVERS=",".join(settings.bootstrap_servers),
        KVSTORE_TOPIC_PREFIX=settings.topic_prefix,
        KVSTORE_GROUP_ID=settings.group_id,
        KVSTORE_PARTITIONS=str(settings.partitions),
        KVSTORE_SESSION_TIMEOUT_MS=str(settings.session_timeout_ms),
        KVSTORE_CACHE_PATH=str(settings.cache_path),
        KVSTORE_ADVERTISED_URL=settings.advertised_url,
        KVSTORE_APPLY_TIMEOUT=str(settings.apply_timeout),
        KVSTORE_PRODUCE_TIMEOUT=str(settings.produce_timeout),
        KVSTORE_HEARTBEAT_TIMEOUT=str(settings.heartbeat_timeout),
        KVSTORE_TOPIC_CONFIGS=",".join(f"{k}={v}" for k, v in settings.topic_configs),
        KVSTORE_PEER_ALLOWLIST=",".join(settings.peer_allowlist),
        KVSTORE_AUTH=settings.auth,
        KVSTORE_API_KEYS=",".join(
            f"{role}:{hashed}" for hashed, role in settings.api_keys
        ),
        KVSTORE_API_KEYS_FILE="",
        KVSTORE_CLUSTER_SECRET=settings.cluster_secret or "",
        KVSTORE_REPLICATION_FACTOR=str(settings.replication_factor),
        KVSTORE_COMPRESSION=settings.compression,
        KVSTORE_MAX_WAIT=str(settings.max_wait),
        KVSTORE_MAX_WATCHES=str(settings.max_watches),
        KVSTORE_WATCH_KEEPALIVE=str(settings.watch_keepalive),
        KVSTORE_WATCH_BUFFER=str(settings.watch_buffer),
        KVSTORE_IDEMPOTENCY_WINDOW=str(settings.idempotency_window),
        **security_environment(settings.security),
    )
    env.update(extra)
    return env


def security_environment(security):
    """The KAFKA_* variables of a KafkaSecurity ("" for unset: conf reads it so)."""
    return {
        "KAFKA_SECURITY_PROTOCOL": security.protocol,
        "KAFKA_SASL_MECHANISM": security.sasl_mechanism or "",
        "KAFKA_SASL_USERNAME": security.sasl_username or "",
        "KAFKA_SASL_PASSWORD": security.sasl_password or "",
        "KAFKA_SSL_CAFILE": security.ssl_cafile or "",
        "KAFKA_SSL_CERTFILE": security.ssl_certfile or "",
        "KAFKA_SSL_KEYFILE": security.ssl_keyfile or "",
    }


class Instance:
    """One store instance: a consumer process and a gunicorn server sharing one cache
    file."""

    def __init__(self, settings, directory, workers=2, headers=None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.settings = dataclasses.replace(
            settings, cache_path=directory / "cache.sqlite3", advertised_url=self.url
        )
        self.workers = workers
        self.headers = headers or {}  # sent by `api` unless it is given others
        self.consumer = self.web = None
        self.consumer_log = directory / "consumer.log"

    def env(self):
        return environment(self.settings)

    def wrap(self, argv):
        """The command line that runs `argv` (a subclass may run it elsewhere)."""
        return argv

    def start_consumer(self):
        log = open(self.consumer_log, "a")
        self.consumer = subprocess.Popen(
            self.wrap([PYTHON, "manage.py", "kvstore_consume"]),
            cwd=ROOT,
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        return self.consumer

    def start_web(self, timeout=30):
        log = open(self.directory / "web.log", "a")
        self.web = subprocess.Popen(
            self.wrap(
                [
                    GUNICORN,
                    "config.asgi",
                    "--bind",
                    f"127.0.0.1:{self.port}",
                    "--workers",
                    str(self.workers),
                    "--threads",
                    "4",
                    "--graceful-timeout",
                    "2",
                    "--no-control-socket",
                ]
            ),
            cwd=ROOT,
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_for(lambda: _answers(self.url + "/healthz"), timeout, "gunicorn to answer")
        return self.web

    def start(self):
        self.start_consumer()
        self.start_web()
        self.wait_ready()
        return self

    def wait_ready(self, timeout=60):
        wait_for(
            lambda: _answers(self.url + "/readyz"),
            timeout,
            f"{self.url}/readyz to say ready",
            self.consumer_log,
        )

    def stop_consumer(self, sig=signal.SIGTERM, timeout=30):
        """Signal the consumer and wait for it; returns its exit code."""
        if self.consumer is None or self.consumer.poll() is not None:
            return self.consumer.returncode if self.consumer else None
        self.consumer.send_signal(sig)
        return self.consumer.wait(timeout)

    def kill(self, consumer=True, web=True):
        """SIGKILL the consumer and/or gunicorn with its workers, as a machine crash
        would."""
        victims = []
        if web and self.web is not None:
            victims += [self.web.pid] + pgrep("-P", str(self.web.pid))
        if consumer and self.consumer is not None:
            victims.append(self.consumer.pid)
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for process in (self.web if web else None, self.consumer if consumer else None):
            if process is not None:
                process.wait(10)

    def stop(self):
        self.stop_consumer()
        if self.web is not None and self.web.poll() is None:
            self.web.terminate()
            try:
                self.web.wait(10)
            except subprocess.TimeoutExpired:
                self.web.kill()

    def cache(self, sql, params=()):
        """Run a read-only query on this instance's cache file ([] until the consumer
        has made it)."""
        if not self.settings.cache_path.exists():
            return []
        conn = sqlite3.connect(
            f"file:{self.settings.cache_path}?mode=ro", uri=True, timeout=10
        )
        try:
            return conn.execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []
            raise
        finally:
            conn.close()

    def api(self, method, path, **kwargs):
        kwargs.setdefault("headers", self.headers)
        return requests.request(
            method, self.url + path, timeout=30, allow_redirects=False, **kwargs
        )


def _answers(url):
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def wait_for(condition, timeout, what, log_file=None, interval=0.05, last=None):
    """Wait until `condition()` is true; on timeout say what was awaited, what `last()`
    saw last and the end of `log_file`."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            tail = f"\nlast seen: {last()}" if last is not None else ""
            if log_file is not None and os.path.exists(log_file):
                tail += "\n" + open(log_file).read()[-3000:]
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}{tail}")
        time.sleep(interval)


def fast_answer(get):
    """The first answer of `get()` that the fast path gave (kvstore.api.fast): each
    gunicorn worker learns from Django's first answer, and which worker takes a
    connection varies, so ask until a worker that has learned answers."""
    seen = []

    def fast():
        seen.append(get())
        return seen[-1].headers["Server-Timing"].endswith(", fast")

    wait_for(
        fast,
        10,
        "a fast-path answer",
        interval=0,
        last=lambda: seen[-1].headers,
    )
    return seen[-1]


def writing_fast(instance):
    """PUT plain JSON until ten answers in a row came from workers whose fast path
    writes (kvstore.api.fast): each worker does once Django has answered a PUT there.
    Keys another instance owns (307) do not count."""
    streak = []

    def ten_fast():
        answer = instance.api(
            "PUT",
            f"/api/kv/learn-{uuid.uuid4().hex[:12]}",
            data="1",
            headers={**instance.headers, "Content-Type": "application/json"},
        )
        if answer.status_code != 307:
            streak.append(answer.headers["Server-Timing"].endswith(", fast"))
        return streak[-10:] == [True] * 10

    wait_for(ten_fast, 20, "every worker to write below Django", interval=0)


def comparable(answer):
    """An answer's status, body and headers but for those that differ each time (its
    date and timing): what the fast path must share with Django's answer."""
    skip = {"date", "server-timing"}
    headers = {k.lower(): v for k, v in answer.headers.items() if k.lower() not in skip}
    return answer.status_code, answer.content, headers
