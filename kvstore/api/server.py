"""The web server: gunicorn's threaded worker, whose own refusals (a request gunicorn
cannot parse: a malformed request line, header or chunk, a line or headers too large, an
unsupported transfer coding) are JSON {"code", "detail"} like every other error, not
gunicorn's HTML page; a stop that waits for this instance's consumer to drain; and the
master's part in the workers' metrics (one directory per instance, emptied at start, a
dead worker's live gauges dropped). Its thread pool has room for the requests that wait
long (watch streams and long-polls) beside `--threads` for everything else.
`gunicorn.conf.py` selects the worker and calls the hooks.

A draining stop: when the consumer leaves the group, the peers go on redirecting to this
instance until they know the new owners, so its web side must keep answering (503, then
307 to the new owners) until the consumer has drained, whatever order the processes got
their SIGTERM in (`bin/instance` signals the consumer first; a supervisor may signal the
consumer and gunicorn at once, systemd every process of the unit).
"""

import gc
import json
import os
import shutil
import signal
import threading
import time
from concurrent import futures

from gunicorn import util
from gunicorn.workers.gthread import ThreadWorker

from kvstore import cache, conf, drain, lease

# How long a stopping web side waits for its consumer to begin a draining stop (it may
# have got its SIGTERM at the same moment); past that, only the web side is stopping.
BEGIN_GRACE = {"master": 2.0, "worker": 1.0}
DRAIN_LIMIT = drain.TIMEOUT + 5

CODES = {
    400: "bad_request",
    403: "forbidden",
    414: "uri_too_long",
    417: "expectation_failed",
    431: "headers_too_large",
    500: "server_error",
}
# gunicorn answers a transfer coding it does not know with 501 (RFC 9112 says SHOULD);
# the store answers every malformed request with a 4xx, so a client's mistake is never
# counted as the server's.
REMAPPED = {501: (400, "Bad Request", "unsupported_transfer_coding")}


def write_json_error(sock, status_int, reason, mesg):
    """gunicorn's `util.write_error`, with a JSON body."""
    code = CODES.get(status_int, "bad_request")
    status_int, reason, code = REMAPPED.get(status_int, (status_int, reason, code))
    body = json.dumps({"code": code, "detail": mesg or reason}).encode("ascii")
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\n"
        "Connection: close\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode("latin-1")
    util.write_nonblock(sock, head + body)


class JSONErrorWorker(ThreadWorker):
    _stopping = False

    def init_process(self):
        # gunicorn writes its refusals with util.write_error (an HTML page) and offers
        # no hook for them; this worker process writes them as JSON instead.
        util.write_error = write_json_error
        super().init_process()

    def get_thread_pool(self):
        """`--threads` for plain requests plus one per long wait the instance allows
        (KVSTORE_MAX_WATCHES, enforced across workers by kvstore.waiting.Slots): a
        stream holds its thread for its life, and never one a plain request needs.
        The pool makes threads only as they are needed."""
        waits = conf.from_environ().max_watches
        return futures.ThreadPoolExecutor(max_workers=self.cfg.threads + waits)

    def handle_exit(self, sig, frame):
        """SIGTERM: stop accepting only once the consumer has drained; then end the
        watch streams at once (with a retry hint), so their clients resume elsewhere
        instead of waiting out the graceful timeout."""
        if self.alive and not self._stopping:
            self._stopping = True
            threading.Thread(target=self._exit_after_drain, daemon=True).start()

    def _exit_after_drain(self):
        from kvstore.watch import hub

        try:
            wait_for_drain(BEGIN_GRACE["worker"])
        finally:
            hub.stop_all()
            super().handle_exit(signal.SIGTERM, None)


def post_worker_init(worker):
    """gunicorn's hook, once a worker has loaded the application: everything loaded so
    far (Django, DRF, the URL conf, the settings) lives as long as the worker, so the
    cyclic garbage collector stops scanning it. Its full collections then take about
    3.5 ms instead of 39 ms, a pause every request in the worker waits out
    (docs/PROFILES.md)."""
    gc.freeze()


def when_ready(arbiter):
    """gunicorn's hook, once the master runs: its first SIGTERM waits for the drain
    (in a thread; the master goes on supervising its workers meanwhile) and then stops
    as gunicorn does; a second SIGTERM stops at once."""
    stop = arbiter.handle_term
    waiting = []

    def handle_term():
        if waiting:
            stop()
        waiting.append(True)
        arbiter.log.info("stopping once the consumer has drained")
        threading.Thread(target=_term_after_drain, args=(arbiter,), daemon=True).start()

    arbiter.handle_term = handle_term


def _term_after_drain(arbiter):
    try:
        wait_for_drain(BEGIN_GRACE["master"])
    finally:
        arbiter.signal(signal.SIGTERM, None)


def wait_for_drain(grace, limit=DRAIN_LIMIT):
    """Return when this instance's consumer is not in a draining stop: it ended one
    (or the process is gone), or none began within `grace` seconds; at most `limit`."""
    settings = conf.from_environ()
    reader = cache.Reader(settings.cache_path)
    began = time.monotonic()
    while time.monotonic() - began < limit:
        with reader.snapshot() as view:
            member = view.member() if view is not None else None
        if member is None or member.heartbeat == 0:
            return
        if not lease.process_alive(member.pid):
            return
        if member.draining_since is None and time.monotonic() - began >= grace:
            return
        time.sleep(0.05)


def use_metrics_directory():
    """Put every worker's metrics in this instance's directory (`metrics_dir`,
    beside the cache). Called by the master before any worker exists:
    prometheus_client chooses its multiprocess mode when first imported, from this
    variable."""
    path = conf.from_environ().metrics_dir
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
    return path


def empty_metrics_directory(path):
    """A new gunicorn starts counting from zero: the files of an earlier run would
    be added to its counts."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)


def worker_exited(pid):
    from kvstore import metrics  # after use_metrics_directory, in the master

    metrics.worker_exited(pid)
