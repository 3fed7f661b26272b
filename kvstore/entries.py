"""What the repository hands the views: entries and their versions, a write's
precondition and result, a read and a page with the positions they reflect, and what a
read waits for first."""

import dataclasses
import json

from kvstore import positions
from kvstore.errors import EntryNotFound, PreconditionFailed

ANY = "*"


@dataclasses.dataclass(frozen=True)
class Version:
    """An entry's version: the (partition, offset) of the record that wrote it. Its ETag
    is "p-o"."""

    partition: int
    offset: int

    @property
    def etag(self):
        return f'"{self.partition}-{self.offset}"'


@dataclasses.dataclass(frozen=True)
class Entry:
    key: str
    value: object
    version: Version

    @classmethod
    def from_row(cls, key, row):
        """The Entry of a cache row (Stored or EntryRow)."""
        return cls(key, json.loads(row.value), Version(row.partition, row.offset))


@dataclasses.dataclass(frozen=True)
class Condition:
    """A write's precondition: If-Match ETags (or ANY), If-None-Match: * (`absent`), or
    must exist."""

    if_match: tuple = ()
    absent: bool = False
    exists: bool = False

    def check(self, current):
        etag = current.version.etag if current else None
        if self.absent and current is not None:
            raise PreconditionFailed("The entry exists (If-None-Match: *).", etag)
        if self.if_match and not self._matches(current, etag):
            raise PreconditionFailed(
                "The entry's version does not match If-Match.", etag
            )
        if self.exists and current is None:
            raise EntryNotFound("No such entry.")

    def _matches(self, current, etag):
        return current is not None and (ANY in self.if_match or etag in self.if_match)

    @property
    def constrains(self):
        """Whether the write depends on the entry it found: then its record carries
        that version and the log decides whether it takes effect."""
        return bool(self.if_match or self.absent or self.exists)


@dataclasses.dataclass(frozen=True)
class Read:
    """An entry as one read found it, and the position the read reflects."""

    entry: Entry
    position: positions.Vector


@dataclasses.dataclass(frozen=True)
class WriteResult:
    entry: Entry | None  # None after a delete
    version: Version
    applied: bool  # took effect and applied here; else durable, not yet confirmed
    created: bool
    conditional: bool = False  # its record carries a condition the log decides
    replayed: bool = False  # the first answer to an earlier request with its key


@dataclasses.dataclass(frozen=True)
class Page:
    entries: list
    after: str | None  # the cursor of the next page, or None on the last page
    position: positions.Vector  # per partition, what the page reflects


@dataclasses.dataclass(frozen=True)
class Wait:
    """What a read waits for first: the positions it must reflect (a Vector or None),
    for at most `seconds` (None: KVSTORE_APPLY_TIMEOUT)."""

    at_least: positions.Vector | None = None
    seconds: float | None = None


NO_WAIT = Wait()
