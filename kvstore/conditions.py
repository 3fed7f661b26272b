"""Conditions decided by the log: a conditional write carries, in a record header, the
version it was based on, and whoever applies the partition decides it at that point
of the log, the same way every time.

The writer's cache may be stale (a deposed owner, a record delayed in a producer), but
the log's order is the same for every reader: a record whose condition no longer holds
where it landed takes no effect anywhere, and its writer answers 412 from the decision.
Compaction keeps only a key's last record, and cannot tell a rejected one from the
others, so after a rejection the partition's owner appends a re-assert (the current
value again, itself conditional) within `min.compaction.lag.ms`; records older than
half that lag are not judged again, since what they were judged against may be
compacted away by now — their re-asserts carry the outcome.
"""

import dataclasses

HEADER = "kvstore-if"
REASSERT_HEADER = "kvstore-reassert"
ABSENT = b"absent"


@dataclasses.dataclass(frozen=True)
class BasedOn:
    """The version a write was based on: (partition, offset), or None for "absent"."""

    version: tuple[int, int] | None

    def header(self):
        if self.version is None:
            return (HEADER, ABSENT)
        return (HEADER, f"{self.version[0]}-{self.version[1]}".encode())

    def holds(self, current):
        """Whether it holds against `current`, the key's version there (or None)."""
        return self.version == current


def based_on(headers):
    """The BasedOn a record carries in its headers, or None for an unconditional one
    (or a header that does not parse: a foreign producer's, taken as unconditional)."""
    for name, value in headers or ():
        if name == HEADER:
            return _parse(value)
    return None


def _parse(value):
    if value == ABSENT:
        return BasedOn(None)
    try:
        partition, offset = value.decode("ascii").split("-")
        return BasedOn((int(partition), int(offset)))
    except (UnicodeDecodeError, ValueError):
        return None


def judged(record, now_ms, window_ms):
    """Whether a record is still young enough to judge (see the module docstring)."""
    return window_ms is None or now_ms - record.timestamp < window_ms


def etag_text(version):
    return None if version is None else f"{version[0]}-{version[1]}"


class Unsettled:
    """Per partition, the keys whose last record so far was rejected: until a later
    record of the key takes effect, the log's last word on them is a record that did
    not, and compaction would keep it. The owner re-asserts them."""

    def __init__(self, keys=()):
        self.keys = {}
        for namespace, partition, key in keys:
            self.add(namespace, partition, key)

    def add(self, namespace, partition, key):
        self.keys.setdefault((namespace, partition), set()).add(key)

    def settle(self, namespace, partition, key):
        keys = self.keys.get((namespace, partition))
        if keys:
            keys.discard(key)

    def pending(self, namespace, partition):
        return set(self.keys.get((namespace, partition), ()))

    def __contains__(self, item):
        namespace, partition, key = item
        return key in self.keys.get((namespace, partition), ())
