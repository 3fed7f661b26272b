"""Reads: an entry, a page of entries, a long-poll on one key, each with the positions
it reflects, from this instance's cache; first waiting, when asked, until the cache has
applied a minimum position (a client's own writes, made through any instance).
"""

import time

from kvstore import cache, gather, positions, routing, timing, waiting
from kvstore.entries import NO_WAIT, Entry, Page, Read
from kvstore.errors import (
    EntryNotFound,
    InvalidPartition,
    InvalidRequest,
    NotServing,
)

POSITION_HEADER = positions.HEADER


class Reads:
    """The read side of the repository. `end_offset(route)` asks Kafka for a
    partition's end offset (strong reads)."""

    def __init__(self, settings, reader, end_offset):
        self.settings, self.reader, self._end_offset = settings, reader, end_offset
        self._changes = None

    def get(self, namespace, key, strong=False, wait=NO_WAIT):
        """The Read of `key`. `strong`: first wait until the cache has applied
        everything the partition held when asked (Kafka's end offset), so writes made
        through any producer are seen; `wait.at_least`: first wait until it has applied
        the key's partition's position in it."""
        with self.reader.snapshot() as view:
            with timing.phase(timing.ROUTE):
                route = routing.route(view, self.settings, namespace, key)
            with timing.phase(timing.CACHE):
                entry = self.entry(view, route)
            self._check_vector(view, wait.at_least)
        needed = max(
            self._end_offset(route) - 1 if strong else -1,
            _offset_in(wait.at_least, route.partition),
        )
        if needed >= route.position:
            with timing.phase(timing.APPLY_WAIT):
                self._reach(route.namespace, route.partition, needed, wait.seconds)
            with timing.phase(timing.CACHE), self.reader.snapshot() as view:
                route = routing.route(view, self.settings, namespace, key)
                entry = self.entry(view, route)
        reflects = positions.Vector.of(namespace, {route.partition: route.position - 1})
        if entry is None:
            missing = EntryNotFound(f"No entry {key!r} in {namespace!r}.")
            missing.headers = {POSITION_HEADER: str(reflects)}
            raise missing
        return Read(entry, reflects)

    def changed(self, namespace, key, etags, seconds):
        """The Read of `key` once its ETag is none of `etags`, or after `seconds` as it
        is then (a long-poll). Raises as `get` does: EntryNotFound once it is deleted,
        NotOwner once its partition moved."""
        deadline = time.monotonic() + seconds
        mark = self.changes.seen  # before looking: no move between is missed
        read, checked = self.get(namespace, key), time.monotonic()
        while read.entry.version.etag in etags:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self.changes.wait(min(remaining, 1.0), since=mark)
            mark = self.changes.seen
            partition = read.entry.version.partition
            moved = cache.position(self.reader.connection(), namespace, partition)
            last = read.position.get(partition, -1)
            # Routed again when the partition moved on, and every second (the lease).
            stale = moved is None or moved.position - 1 != last
            if stale or time.monotonic() - checked >= 1:
                read, checked = self.get(namespace, key), time.monotonic()
        return read

    def list(self, namespace, after, limit, prefix="", wait=NO_WAIT):
        """A page of entries in key order after the key `after` (keys starting with
        `prefix`), gathered from every partition's owner, with the positions it
        reflects; first waits as `wait` says."""
        after = after or ""
        if wait.at_least is not None:
            with self.reader.snapshot() as view:
                self._check_vector(view, wait.at_least)
                where = gather.plan(view, self.settings, namespace)
            mine = [p for p, peer in where.items() if peer is None]
            self._reach_all(namespace, mine, wait)
        with self.reader.snapshot() as view:
            with timing.phase(timing.ROUTE):
                where = gather.plan(view, self.settings, namespace)
            mine = [p for p, peer in where.items() if peer is None]
            with timing.phase(timing.CACHE):
                local_rows = view.entries(namespace, mine, after, limit + 1, prefix)
                applied = _applied(view, namespace, mine)
        ask = gather.Ask(
            namespace, after, limit + 1, prefix, wait.at_least, wait.seconds
        )
        with timing.phase(timing.PEERS):
            rows, remote = gather.merge(local_rows, where, ask)
        entries = [Entry.from_row(row.key, row) for row in rows[:limit]]
        after = entries[-1].key if len(rows) > limit else None
        return Page(
            entries, after, positions.Vector.of(namespace, {**applied, **remote})
        )

    def local_rows(self, namespace, partitions, after, limit, prefix="", wait=NO_WAIT):
        """(EntryRows of `partitions`, {partition: last offset applied}), each of which
        this instance must serve itself (a peer's gather: never redirected)."""
        with self.reader.snapshot() as view:
            self._check_served(view, namespace, partitions)
        self._reach_all(namespace, partitions, wait)
        with self.reader.snapshot() as view:
            self._check_served(view, namespace, partitions)
            rows = view.entries(namespace, partitions, after or "", limit, prefix)
            return rows, _applied(view, namespace, partitions)

    def _check_vector(self, view, vector):
        """InvalidRequest when a position names a partition the namespace lacks."""
        if vector is None or not vector.offsets:
            return
        count = routing.topic_facts(view, vector.namespace, self.settings).partitions
        if vector.offsets[-1][0] >= count:
            raise InvalidRequest(
                f"min_position: {vector.namespace!r} has {count} partitions.",
                code="invalid_position",
            )

    def _check_served(self, view, namespace, partitions):
        routing.check_consumer(view, self.settings)
        count = routing.topic_facts(view, namespace, self.settings).partitions
        if any(partition >= count for partition in partitions):
            # Not a 503: no amount of waiting makes such a partition appear.
            raise InvalidPartition(f"{namespace!r} has {count} partitions.")
        for partition in partitions:
            held = view.partition(namespace, partition)
            if held is None or held.state != cache.READY:
                raise NotServing(
                    f"Partition {partition} of {namespace!r} is not served here.",
                    code="partition_moving",
                    partition=partition,
                )

    def _reach(self, namespace, partition, offset, seconds):
        """Wait until the cache has applied `offset`; NotServing (not_caught_up) when
        it has not within `seconds` (None: KVSTORE_APPLY_TIMEOUT)."""
        seconds = self.settings.apply_timeout if seconds is None else seconds
        if not waiting.until_applied(
            self.reader, self.changes, namespace, partition, offset, seconds
        ):
            raise NotServing(
                f"Partition {partition} of {namespace!r} has not applied offset "
                f"{offset} here yet.",
                code="not_caught_up",
                partition=partition,
            )

    def _reach_all(self, namespace, partitions, wait):
        for partition in partitions:
            offset = _offset_in(wait.at_least, partition)
            if offset >= 0:
                self._reach(namespace, partition, offset, wait.seconds)

    @property
    def changes(self):
        """This process's waker for waits on the cache (made after fork)."""
        if self._changes is None:
            self._changes = waiting.Changes(self.reader)
        return self._changes

    def catch_up(self, route):
        """Wait until the cache has applied everything the route's partition held
        when asked (Kafka's end offset)."""
        end = self._end_offset(route)
        if end > 0:
            self._reach(route.namespace, route.partition, end - 1, None)

    @staticmethod
    def entry(view, route):
        row = view.entry(route.namespace, route.key)
        # A row written to another partition by a foreign producer is not this key's.
        if row is None or row.partition != route.partition:
            return None
        return Entry.from_row(route.key, row)


def _offset_in(vector, partition):
    """The offset a Vector (or None) holds for `partition`; -1 for none."""
    return -1 if vector is None else vector.get(partition, -1)


def _applied(view, namespace, partitions):
    """{partition: last offset applied} of the given partitions, in `view`."""
    wanted = set(partitions)
    return {
        row.partition: row.position - 1
        for row in view.partitions(namespace)
        if row.partition in wanted
    }
