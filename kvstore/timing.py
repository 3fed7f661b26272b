"""Where a request's time goes: the stages a request passes (routing, the cache read,
the produce, the wait for the cache to apply it) add their seconds to the request's
phases, which become its `Server-Timing` header and the write-latency metrics.

gunicorn's threaded workers serve a request on one thread from start to end, so the
current request's phases are per thread. Outside a request (a command, the consumer)
nothing is recorded. Cheap by design: `time.perf_counter` and one small dict per
request; the store is benchmarked.
"""

import threading
import time

# The phases, in the order the header lists them.
ROUTE, CACHE, PRODUCE, APPLY_WAIT, PEERS, TOTAL = (
    "route",
    "cache",
    "produce",
    "apply_wait",
    "peers",
    "total",
)
ORDER = (ROUTE, CACHE, PRODUCE, APPLY_WAIT, PEERS)
_current = threading.local()


def begin():
    """Start recording this thread's request; returns its phases {name: seconds}."""
    phases = _current.phases = {}
    return phases


def end():
    _current.phases = None


def add(name, seconds):
    """Add `seconds` to phase `name` of the current request, if one is recorded."""
    phases = getattr(_current, "phases", None)
    if phases is not None:
        phases[name] = phases.get(name, 0.0) + seconds


class phase:
    """`with timing.phase(timing.ROUTE): ...` adds the block's duration."""

    __slots__ = ("name", "started")

    def __init__(self, name):
        self.name = name

    def __enter__(self):
        self.started = time.perf_counter()

    def __exit__(self, *exc):
        add(self.name, time.perf_counter() - self.started)


def header(phases, total):
    """The Server-Timing value: each recorded phase and the total, in milliseconds."""
    parts = [
        f"{name};dur={phases[name] * 1000:.2f}" for name in ORDER if name in phases
    ]
    parts.append(f"{TOTAL};dur={total * 1000:.2f}")
    return ", ".join(parts)
