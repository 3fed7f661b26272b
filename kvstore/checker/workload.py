"""The checker's workload: client threads spread over the instances, each doing reads,
compare-and-set increments (GET, then PUT with If-Match of the ETag read) and blind PUTs
with unique values on a few keys per partition, recording every operation in the
history. A client follows a 307 at most twice, as the store's hop bound allows.
"""

import itertools
import random
import threading
import time
from urllib.parse import quote, urljoin, urlsplit

import requests

from kvstore.checker.history import FinalRead, Op
from kvstore.partitioner import partition_for

MAX_HOPS = 2


class KeyPlan:
    """`per_partition` keys of every partition live from the start; then one more key
    every `fresh_every` seconds, the partitions in turn (so some keys are first written
    while a fault lasts, where a false 404 would show), up to `fresh_per_partition`
    more per partition."""

    def __init__(
        self,
        prefix,
        partitions,
        per_partition=3,
        fresh_per_partition=4,
        fresh_every=4.0,
    ):
        buckets = {p: [] for p in range(partitions)}
        wanted = per_partition + fresh_per_partition
        for i in itertools.count():
            key = f"{prefix}-{i}"
            bucket = buckets[partition_for(key, partitions)]
            if len(bucket) < wanted:
                bucket.append(key)
            if all(len(b) == wanted for b in buckets.values()):
                break
        self.initial = [k for b in buckets.values() for k in b[:per_partition]]
        self.fresh = [k for wave in zip(*buckets.values()) for k in wave][
            per_partition * partitions :
        ]
        self.fresh_every = fresh_every
        self.keys = self.initial + self.fresh

    def active(self, elapsed):
        """The keys in play `elapsed` seconds into the run."""
        return self.initial + self.fresh[: int(elapsed / self.fresh_every)]


class Answer:
    """The final answer to one request after following redirects (or why none)."""

    def __init__(self, response=None, error=None, hops=0, served_by=None):
        self.response, self.error, self.hops = response, error, hops
        self.served_by = served_by

    @property
    def status(self):
        return None if self.response is None else self.response.status_code

    def json(self):
        try:
            return self.response.json() if self.response is not None else None
        except ValueError:
            return None

    @property
    def etag(self):
        tag = None if self.response is None else self.response.headers.get("ETag")
        return tag.strip().strip('"') if tag else None


def send(session, method, url, timeout, **kwargs):
    """One request, following at most MAX_HOPS 307s (same method, body, headers)."""
    hops = 0
    while True:
        try:
            response = session.request(
                method, url, allow_redirects=False, timeout=timeout, **kwargs
            )
        except requests.RequestException as exc:
            return Answer(error=error_kind(exc), hops=hops, served_by=base_of(url))
        if response.status_code != 307 or hops == MAX_HOPS:
            return Answer(response, hops=hops, served_by=base_of(url))
        hops += 1
        url = urljoin(url, response.headers.get("Location", ""))


def error_kind(exc):
    """What went wrong with a request that got no answer: refused, timeout, reset or
    connection."""
    if isinstance(exc, requests.Timeout):
        return "timeout"
    text = repr(exc)
    if "Connection refused" in text or "Errno 111" in text:
        return "refused"
    if "reset" in text.lower() or "RemoteDisconnected" in text or "aborted" in text:
        return "reset"
    return "connection"


def base_of(url):
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class Workload:
    """Client threads against `urls` (client i sends to urls[i % len]) until stopped."""

    def __init__(
        self,
        history,
        urls,
        plan,
        run_id,
        namespace="kv",
        clients=8,
        mix=(0.5, 0.35),
        think=0.0,
        timeout=10.0,
        seed=None,
    ):
        self.history, self.urls, self.plan = history, list(urls), plan
        self.run_id, self.namespace, self.clients = run_id, namespace, clients
        self.mix, self.think, self.timeout = mix, think, timeout
        self.seed = seed if seed is not None else random.randrange(1 << 30)
        self._stop = threading.Event()
        self._threads = []
        self.began = None

    def start(self):
        self.began = time.monotonic()
        for i in range(self.clients):
            client = _Client(self, i, self.urls[i % len(self.urls)])
            thread = threading.Thread(
                target=client.run, name=f"checker-client-{i}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def stop(self):
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout * 2 + 5)

    def path(self, key):
        return f"/api/{self.namespace}/{quote(key, safe='')}"


class _Client:
    """One client thread: its own session, instance and random stream."""

    def __init__(self, workload, number, base):
        self.w, self.number, self.base = workload, number, base
        self.random = random.Random(workload.seed * 1000 + number)
        self.session = requests.Session()
        self.sequence = itertools.count()

    def run(self):
        w = self.w
        while not w._stop.is_set():
            key = self.random.choice(w.plan.active(time.monotonic() - w.began))
            dice = self.random.random()
            if dice < w.mix[0]:
                self.read(key)
            elif dice < w.mix[0] + w.mix[1]:
                self.increment(key)
            else:
                self.write(key, {"n": 0}, None)
            if w.think:
                w._stop.wait(w.think)
        self.session.close()

    def op(self, kind, key):
        op_id = f"{self.w.run_id}-c{self.number}-{next(self.sequence)}"
        return Op(op_id, kind, key, self.number, self.base)

    def read(self, key):
        op = self.op("read", key)
        op.start = time.monotonic()
        answer = send(self.session, "GET", self.base + self.w.path(key), self.w.timeout)
        op.end = time.monotonic()
        body = self._finish(op, answer)
        if op.status == 200 and isinstance(body, dict):
            op.value_op = body.get("op")
        self.w.history.record(op)
        return op, body

    def increment(self, key):
        """Compare-and-set: n + 1 on the version just read (or create if absent)."""
        read, body = self.read(key)
        if read.status == 200 and read.etag:
            n = body.get("n", 0) if isinstance(body, dict) else 0
            self.write(key, {"n": n + 1 if isinstance(n, int) else 1}, read.etag)
        elif read.status == 404:
            self.write(key, {"n": 1}, "absent")

    def write(self, key, value, if_match):
        op = self.op("write", key)
        op.if_match, op.value_op = if_match, op.id
        headers = {}
        if if_match == "absent":
            headers["If-None-Match"] = "*"
        elif if_match:
            headers["If-Match"] = f'"{if_match}"'
        op.start = time.monotonic()
        answer = send(
            self.session,
            "PUT",
            self.base + self.w.path(key),
            self.w.timeout,
            json={**value, "op": op.id},
            headers=headers,
        )
        op.end = time.monotonic()
        self._finish(op, answer)
        self.w.history.record(op)

    def _finish(self, op, answer):
        op.status, op.error, op.hops = answer.status, answer.error, answer.hops
        op.served_by, op.etag = answer.served_by, answer.etag
        body = answer.json()
        if isinstance(body, dict) and isinstance(body.get("code"), str):
            op.code = body["code"]
        return body


def final_reads(urls, keys, namespace="kv", deadline_s=60.0, timeout=10.0):
    """Each key's state by `?consistency=strong` GETs through the API, retried on other
    instances while they answer 503 or fail, until `deadline_s`."""
    session, finals = requests.Session(), []
    deadline = time.monotonic() + deadline_s
    try:
        for key in keys:
            path = f"/api/{namespace}/{quote(key, safe='')}?consistency=strong"
            for attempt in itertools.count():
                url = urls[attempt % len(urls)] + path
                answer = send(session, "GET", url, timeout)
                if answer.status in (200, 404) or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            body = answer.json()
            finals.append(
                FinalRead(
                    key,
                    answer.status,
                    answer.etag if answer.status == 200 else None,
                    (
                        body.get("op")
                        if answer.status == 200 and isinstance(body, dict)
                        else None
                    ),
                    body.get("code") if isinstance(body, dict) else answer.error,
                )
            )
    finally:
        session.close()
    return finals
