"""Write health of one instance's web workers: a circuit breaker per worker process, and
a small shared file that /readyz reads.

While Kafka does not answer, a write waits out the produce timeout and holds a web
thread; a few such writes would hold them all, and reads and redirects would queue
behind them. After an unknown or failed write, a worker lets one write at a time probe
Kafka and answers the others at once with a 503 (nothing written) until one succeeds.
"""

import fcntl
import json
import os
import threading
import time

FAILING_FOR = 2.0  # seconds of failing writes before /readyz says so


class Breaker:
    def __init__(self, health_path):
        self.health = Health(health_path)
        self._probe = threading.Lock()
        self._failing_since = None

    @property
    def open(self):
        return self._failing_since is not None

    def attempt(self):
        """A context manager around one write; None while the breaker refuses it."""
        if not self.open:
            return _Attempt(self, probe=False)
        if self._probe.acquire(blocking=False):
            return _Attempt(self, probe=True)
        return None

    def succeeded(self):
        if self._failing_since is not None:
            self._failing_since = None
            self.health.record(None)

    def failed(self):
        now = time.time()
        if self._failing_since is None:
            self._failing_since = now
        self.health.record(self._failing_since, now)


class _Attempt:
    def __init__(self, breaker, probe):
        self.breaker, self.probe = breaker, probe

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if self.probe:
            self.breaker._probe.release()


class Health:
    """Per worker: since when its writes fail and when one last failed (None: they do
    not), in one JSON file beside the cache, so whichever worker answers /readyz sees
    every worker's."""

    def __init__(self, path):
        self.path = path

    def record(self, failing_since, last_failed=None):
        with open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # workers read, change and replace it
            try:
                state = json.loads(self.path.read_text())
            except (OSError, ValueError):
                state = {}
            state[str(os.getpid())] = (
                None if failing_since is None else [failing_since, last_failed]
            )
            tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}")
            tmp.write_text(json.dumps(state))
            os.replace(tmp, self.path)

    def failing_since(self, alive=lambda pid: True, recent=None, now=None):
        """The earliest time a live worker's writes started failing, or None. With
        `recent`, only workers whose last write failed at most `recent` seconds ago
        count: one that has had no write since an outage has no evidence either way,
        and must not keep the instance unready while nobody writes."""
        try:
            state = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        now = time.time() if now is None else now
        times = [
            since
            for pid, (since, last) in _failing(state)
            if alive(int(pid)) and (recent is None or now - last <= recent)
        ]
        return min(times, default=None)


def _failing(state):
    """(pid, (failing since, last failed)) of the workers whose writes fail."""
    for pid, entry in state.items():
        if isinstance(entry, (int, float)):  # written before last_failed existed
            entry = [entry, entry]
        if entry is not None:
            yield pid, (entry[0], entry[1] if entry[1] is not None else entry[0])


def path_for(cache_path):
    return cache_path.with_name(cache_path.name + ".writes")
