"""The log's verdict: a replay of the raw topic, partition by partition in offset order,
giving each key's true history.

A record with the `kvstore-if` header (`absent`, or the version `P-O` its writer based
it on) takes effect only if the key's current version (the (partition, offset) of the
last record that took effect; none after a tombstone took effect) is that one; a record
without it takes effect unconditionally. Re-assert records (`kvstore-reassert: 1`)
repeat the current value after a rejection and follow the same rule.
"""

import dataclasses
import json

IF_HEADER = "kvstore-if"
REASSERT_HEADER = "kvstore-reassert"
ABSENT = "absent"


@dataclasses.dataclass(frozen=True)
class Replayed:
    """A record and what the replay made of it."""

    partition: int
    offset: int
    key: str
    op: str | None  # the "op" of its JSON value (None: a tombstone or foreign value)
    tombstone: bool
    condition: str | None  # the kvstore-if header, None when unconditional
    reassert: bool
    effect: bool
    previous: tuple | None  # the key's version just before it (None: absent)

    @property
    def version(self):
        return (self.partition, self.offset)


@dataclasses.dataclass
class Replay:
    """Each key's history by the log."""

    by_version: dict  # (partition, offset) -> Replayed
    by_op: dict  # op id -> [Replayed] (writes, not re-asserts)
    effective: dict  # key -> [Replayed that took effect, in offset order]
    final: dict  # key -> the last Replayed that took effect (None: absent)

    def tombstone_since(self, key, offset):
        """Whether a tombstone for `key` took effect at `offset` or later."""
        return any(
            r.tombstone and r.offset >= offset for r in self.effective.get(key, ())
        )


def parse_version(text):
    """(partition, offset) of an ETag-like "P-O" (quotes allowed), or None."""
    if not text:
        return None
    partition, sep, offset = text.strip().strip('"').partition("-")
    if not sep or not partition.isdigit() or not offset.isdigit():
        return None
    return int(partition), int(offset)


def holds(condition, current):
    """Whether a record's `kvstore-if` condition holds on the key's current version
    ((partition, offset), or None when absent)."""
    if condition is None:
        return True
    tags = [tag.strip().strip('"') for tag in condition.split(",") if tag.strip()]
    if ABSENT in tags:
        return current is None
    if "*" in tags:
        return current is not None
    return current is not None and any(parse_version(t) == current for t in tags)


def value_op(value):
    """The "op" field of a JSON object value, or None."""
    if value is None:
        return None
    try:
        decoded = json.loads(value)
    except ValueError:
        return None
    return decoded.get("op") if isinstance(decoded, dict) else None


def replay(records, keys=None):
    """The Replay of `records` (history.Record), only of `keys` when given."""
    result = Replay({}, {}, {}, {})
    current = {}  # key -> (partition, offset) of its current version, absent if missing
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        if keys is not None and record.key not in keys:
            continue
        condition = record.headers.get(IF_HEADER)
        reassert = record.headers.get(REASSERT_HEADER, "0") not in ("", "0", "false")
        previous = current.get(record.key)
        effect = holds(condition, previous)
        replayed = Replayed(
            record.partition,
            record.offset,
            record.key,
            value_op(record.value),
            record.value is None,
            condition,
            reassert,
            effect,
            previous,
        )
        result.by_version[replayed.version] = replayed
        if replayed.op is not None and not reassert:
            result.by_op.setdefault(replayed.op, []).append(replayed)
        if effect:
            result.effective.setdefault(record.key, []).append(replayed)
            if replayed.tombstone:
                current.pop(record.key, None)
            else:
                current[record.key] = replayed.version
    for key in keys if keys is not None else result.effective:
        last = result.effective.get(key, [None])[-1]
        result.final[key] = None if last is None or last.tombstone else last
    return result
