"""Positions that travel: how far a partition's log an answer reflects, as text a
client can carry from one instance to another.

A position names the last offset of a partition's log an answer reflects (a write's
own record, everything a read saw). A vector holds one per partition of a namespace,
the namespace written once: `kv:0:41,3:17`. A partition missing from a vector has
nothing reflected yet (a read need not wait for it, a watch starts it at offset 0).
One position is a vector of one, so writes, reads, lists and watch event ids share
one grammar.
"""

import dataclasses
import re

HEADER = "Kvstore-Position"  # what an answer reflects
MIN_HEADER = "Kvstore-Min-Position"  # what a read must reflect (or ?min_position=)
MAX_LENGTH = 8192  # characters: a few thousand partitions
_ENTRY = re.compile(r"([0-9]{1,9}):([0-9]{1,18})")


class PositionInvalid(ValueError):
    """Text that is not a position vector of the namespace asked about."""


@dataclasses.dataclass(frozen=True)
class Vector:
    """{partition: last offset reflected} of one namespace."""

    namespace: str
    offsets: tuple = ()  # sorted ((partition, offset), ...)

    @classmethod
    def of(cls, namespace, offsets):
        """A Vector from {partition: offset}; offsets below 0 (nothing yet) are left
        out."""
        kept = sorted((p, o) for p, o in dict(offsets).items() if o >= 0)
        return cls(namespace, tuple(kept))

    def get(self, partition, default=None):
        return dict(self.offsets).get(partition, default)

    def as_dict(self):
        return dict(self.offsets)

    def merged(self, other):
        """The later of the two positions of every partition."""
        if other is None:
            return self
        joined = self.as_dict()
        for partition, offset in other.offsets:
            joined[partition] = max(offset, joined.get(partition, -1))
        return Vector.of(self.namespace, joined)

    def __str__(self):
        entries = ",".join(f"{p}:{o}" for p, o in self.offsets)
        return f"{self.namespace}:{entries}"


def parse(text, namespace=None, partitions=None):
    """The Vector written in `text`. PositionInvalid when it is malformed, names another
    namespace than `namespace`, a partition twice, or one past `partitions`."""
    if len(text) > MAX_LENGTH:
        raise PositionInvalid("The position is too long.")
    name, sep, rest = text.strip().partition(":")
    if not sep or not name:
        raise PositionInvalid(
            f"{text[:80]!r} is not a position like 'kv:2:41' or 'kv:0:41,3:17'."
        )
    if namespace is not None and name != namespace:
        raise PositionInvalid(
            f"The position is one of namespace {name!r}, not {namespace!r}."
        )
    return Vector.of(name, _entries(rest, name, partitions))


def _entries(rest, name, partitions):
    """{partition: offset} of a vector's "p:o,p:o" part."""
    offsets = {}
    for entry in rest.split(",") if rest else ():
        match = _ENTRY.fullmatch(entry.strip())
        if match is None:
            raise PositionInvalid(
                f"{entry[:40]!r} is not partition:offset (whole numbers)."
            )
        partition, offset = int(match[1]), int(match[2])
        if partition in offsets:
            raise PositionInvalid(f"Partition {partition} appears twice.")
        if partitions is not None and partition >= partitions:
            raise PositionInvalid(
                f"{name!r} has {partitions} partitions; there is no partition "
                f"{partition}."
            )
        offsets[partition] = offset
    return offsets


def single(namespace, partition, offset):
    """The position of one record (a write's answer)."""
    return Vector(namespace, ((partition, offset),))
