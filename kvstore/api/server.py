"""The web server's parts that do not depend on its worker class: a stop that waits
for this instance's consumer to drain, and the master's part in the workers' metrics
(one directory per instance, emptied at start, a dead worker's live gauges dropped).
`gunicorn.conf.py` selects the worker (kvstore.api.loop.StoreWorker) and calls the
hooks.

A draining stop: when the consumer leaves the group, the peers go on redirecting to this
instance until they know the new owners, so its web side must keep answering (503, then
307 to the new owners) until the consumer has drained, whatever order the processes got
their SIGTERM in (`bin/instance` signals the consumer first; a supervisor may signal the
consumer and gunicorn at once, systemd every process of the unit).
"""

import gc
import os
import shutil
import signal
import threading
import time

from kvstore import cache, conf, drain, lease

# How long a stopping web side waits for its consumer to begin a draining stop (it may
# have got its SIGTERM at the same moment); past that, only the web side is stopping.
BEGIN_GRACE = {"master": 2.0, "worker": 1.0}
DRAIN_LIMIT = drain.TIMEOUT + 5


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
