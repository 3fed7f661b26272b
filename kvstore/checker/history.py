"""The checker's history: every operation a client made (start and end on the monotonic
clock, instance, answer), the faults injected, the topic's records and the final reads,
kept in memory and written as JSON lines as they happen, so a failing run can be read
again (`load`) and analysed offline.
"""

import dataclasses
import json
import threading

# What a write's answer says about the log (the store's answer semantics).
ACKED = "acked"  # 200/201/204: durable and applied, its ETag is its record
ACCEPTED = "accepted"  # 202: durable; the log's replay decides whether it took effect
REJECTED = "rejected"  # 412: did not take effect
NOTHING = "nothing"  # 503: certain that nothing was written
UNKNOWN = "unknown"  # 504, another 5xx, or no answer: may or may not be in the log
REFUSED = "refused"  # another 4xx (or a redirect beyond the hop bound): not done


@dataclasses.dataclass
class Op:
    """One client operation. `id` is unique; a write stores it in its value as "op"."""

    id: str
    kind: str  # "read" | "write"
    key: str
    client: int
    instance: str  # the base URL the client sent the request to
    start: float = 0.0  # time.monotonic()
    end: float = 0.0
    status: int | None = None  # None: no HTTP answer
    code: str | None = None  # the error body's stable code (and 202's)
    etag: str | None = None  # "P-O", without quotes
    value_op: str | None = None  # the "op" of the value read (a write: its own id)
    if_match: str | None = None  # "P-O", "absent" (If-None-Match: *), None: blind
    hops: int = 0  # 307s followed
    error: str | None = None  # "refused" | "timeout" | "reset" | "connection"
    served_by: str | None = None  # the base URL that gave the final answer

    @property
    def outcome(self):
        """The write's outcome class (see the module constants)."""
        status = self.status
        if status in (200, 201, 204):
            return ACKED
        if status == 202:
            return ACCEPTED
        if status == 412:
            return REJECTED
        if status == 503:
            return NOTHING
        if status is None or status >= 500:
            return UNKNOWN
        return REFUSED

    @property
    def available(self):
        """The store gave a decided answer (not a 5xx, not a lost connection)."""
        return self.status is not None and self.status < 500 and self.status != 307

    @property
    def refused_after_redirect(self):
        return self.error == "refused" and self.hops > 0


@dataclasses.dataclass
class Fault:
    """A fault injected during the run: from `start` (injected) to `end` (healed)."""

    name: str
    start: float
    end: float | None = None
    detail: str = ""


@dataclasses.dataclass
class FinalRead:
    """A key's state read through the API after the run (`?consistency=strong`)."""

    key: str
    status: int | None
    etag: str | None = None
    value_op: str | None = None
    code: str | None = None


@dataclasses.dataclass(frozen=True)
class Record:
    """A topic record as the checker sees it: decoded key and value text (None: a
    tombstone) and headers as {name: text}."""

    partition: int
    offset: int
    key: str
    value: str | None
    headers: dict


_KINDS = {"op": Op, "fault": Fault, "final": FinalRead, "record": Record}


class History:
    """A thread-safe recorder; with `path`, each entry is also written as a JSON line
    the moment it is recorded."""

    def __init__(self, path=None, meta=None):
        self.meta = dict(meta or {})
        self.ops, self.faults, self.finals, self.records = [], [], [], []
        self._lock = threading.Lock()
        self._file = open(path, "w", encoding="utf-8") if path else None
        self._write({"type": "run", **self.meta})

    def record(self, op):
        with self._lock:
            self.ops.append(op)
            self._write({"type": "op", **dataclasses.asdict(op)})

    def fault(self, name, start, detail=""):
        """Record an injected fault; `healed(fault, end)` closes it."""
        fault = Fault(name, start, None, detail)
        with self._lock:
            self.faults.append(fault)
        return fault

    def healed(self, fault, end):
        with self._lock:
            fault.end = end
            self._write({"type": "fault", **dataclasses.asdict(fault)})

    def add_finals(self, finals):
        with self._lock:
            self.finals.extend(finals)
            for final in finals:
                self._write({"type": "final", **dataclasses.asdict(final)})

    def add_records(self, records):
        with self._lock:
            self.records.extend(records)
            for record in records:
                self._write({"type": "record", **dataclasses.asdict(record)})

    def close(self):
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def _write(self, entry):
        if self._file is not None:
            self._file.write(json.dumps(entry, separators=(",", ":")) + "\n")
            self._file.flush()


def load(path):
    """A History read back from its JSON lines (not recording further)."""
    history = History()
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            entry = json.loads(line)
            kind = entry.pop("type")
            if kind == "run":
                history.meta = entry
                continue
            if kind not in _KINDS:
                raise ValueError(f"{path}:{number}: unknown entry type {kind!r}")
            item = _KINDS[kind](**entry)
            {
                "op": history.ops,
                "fault": history.faults,
                "final": history.finals,
                "record": history.records,
            }[kind].append(item)
    return history
