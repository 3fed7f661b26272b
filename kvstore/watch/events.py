"""What a record did, as a watch reports it: a put or a delete of one key at one
position, and the Server-Sent Events text of it. Pure."""

import dataclasses
import json

from kvstore import apply, conditions, idempotency, positions

PUT, DELETE = "put", "delete"


@dataclasses.dataclass(frozen=True)
class Event:
    partition: int
    offset: int
    kind: str  # PUT or DELETE
    key: str
    value: str | None  # the JSON text put; None for a delete

    def data(self):
        """The event's JSON: key, value (puts only) and version ("p-o")."""
        version = f"{self.partition}-{self.offset}"
        if self.kind == DELETE:
            return {"key": self.key, "version": version}
        value = json.loads(self.value)
        return {"key": self.key, "value": value, "version": version}


def decided_by_applier(record):
    """Whether only the applier can tell if `record` took effect: it carries a
    condition or an idempotency key (kvstore.conditions, kvstore.idempotency)."""
    return conditions.based_on(record.headers) is not None or (
        idempotency.of(record.headers) is not None
    )


def events_of(records, partitions, no_effect=frozenset()):
    """The Events of one partition's records (in offset order), as the consumer's
    apply step reads them: misplaced and keyless records do nothing, an unusable
    value leaves its key without one (a delete), records in `no_effect` are left
    out."""
    found = []
    for record in records:
        if record.offset in no_effect:
            continue
        kind, key, value = apply.classify(record, record.partition, partitions)
        if key is None or kind == apply.MISPLACED:
            continue
        event_kind = PUT if kind == apply.SET else DELETE
        found.append(Event(record.partition, record.offset, event_kind, key, value))
    return found


def follow(expected, records):
    """Whether `records` start at offset `expected` and follow one another: this
    store's partitions have no holes but those compaction makes (see
    kvstore.watch.history), and a hole is history lost."""
    for record in records:
        if record.offset != expected:
            return False
        expected = record.offset + 1
    return True


def matches(event, prefix="", key=None):
    """Whether a watch of `key` (or of keys starting with `prefix`) wants `event`."""
    if key is not None:
        return event.key == key
    return event.key.startswith(prefix)


def frame(event, vector):
    """The SSE message of `event`; its id is `vector`, the position vector after it."""
    data = json.dumps(event.data(), separators=(",", ":"), ensure_ascii=False)
    return f"event: {event.kind}\nid: {vector}\ndata: {data}\n\n".encode()


def comment(text):
    return f": {text}\n\n".encode()


def progress(vector):
    """An id without data: a client's Last-Event-ID moves on (past records it did not
    want), and no event is dispatched (the SSE processing model)."""
    return f"id: {vector}\n\n".encode()


def retry(milliseconds):
    return f"retry: {int(milliseconds)}\n\n".encode()


def failure(code, detail, **extra):
    """An `error` event: the stream ends with it, and says why."""
    body = {"code": code, "detail": detail, **extra}
    return f"event: error\ndata: {json.dumps(body)}\n\n".encode()


def vector_of(namespace, next_offsets):
    """The position vector of a watch that next wants `next_offsets`."""
    return positions.Vector.of(namespace, {p: o - 1 for p, o in next_offsets.items()})
