"""The repository: get, put, delete and list entries of a namespace, for the views.

Reads come from the cache; writes are routed, serialised per key, produced to Kafka, and
answered only once this instance's cache has applied them (read-your-writes), or
honestly as not yet applied.
"""

import dataclasses
import json
import logging
import os
import threading
import time
import uuid

from kvstore import cache, conditions, gather, locks, log, routing, timing
from kvstore import values, writes
from kvstore.conf import store_settings
from kvstore.errors import (
    EntryNotFound,
    InvalidPartition,
    InvalidValue,
    NotServing,
    PreconditionFailed,
    RecordTooLarge,
    StoreUnavailable,
    WriteOutcomeUnknown,
)
from kvstore.partitioner import partition_for

logger = logging.getLogger(__name__)
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
class WriteResult:
    entry: Entry | None  # None after a delete
    version: Version
    applied: bool  # took effect and applied here; else durable, not yet confirmed
    created: bool
    conditional: bool = False  # its record carries a condition the log decides


@dataclasses.dataclass(frozen=True)
class Page:
    entries: list
    after: str | None  # the cursor of the next page, or None on the last page


class Repository:
    def __init__(self, settings):
        self.settings = settings
        self.reader = cache.Reader(settings.cache_path)
        self.locks = locks.KeyLocks(
            locks.path_for(settings.cache_path), settings.namespaces
        )
        self._producer = self._admin = None
        self._producer_lock = threading.Lock()
        self.breaker = writes.Breaker(writes.path_for(settings.cache_path))

    # Reads

    def get(self, namespace, key, strong=False):
        """The entry of `key`. `strong`: first wait until the cache has applied
        everything the partition held when asked (Kafka's end offset), so writes made
        through any producer are seen."""
        with self.reader.snapshot() as view:
            with timing.phase(timing.ROUTE):
                route = routing.route(view, self.settings, namespace, key)
            with timing.phase(timing.CACHE):
                entry = None if strong else self._entry(view, route)
        if strong:
            with timing.phase(timing.APPLY_WAIT):
                self._catch_up(route)
            with timing.phase(timing.CACHE), self.reader.snapshot() as view:
                entry = self._entry(view, route)
        if entry is None:
            raise EntryNotFound(f"No entry {key!r} in {namespace!r}.")
        return entry

    def list(self, namespace, after, limit):
        """A page of entries in key order after the key `after`, gathered from every
        partition's owner."""
        after = after or ""
        with self.reader.snapshot() as view:
            with timing.phase(timing.ROUTE):
                where = gather.plan(view, self.settings, namespace)
            mine = [p for p, peer in where.items() if peer is None]
            with timing.phase(timing.CACHE):
                local_rows = view.entries(namespace, mine, after, limit + 1)
        with timing.phase(timing.PEERS):
            rows = gather.merge(local_rows, where, namespace, after, limit + 1)
        entries = [Entry.from_row(row.key, row) for row in rows[:limit]]
        return Page(entries, entries[-1].key if len(rows) > limit else None)

    def local_rows(self, namespace, partitions, after, limit):
        """EntryRows of `partitions`, each of which this instance must serve itself (a
        peer's gather: never redirected)."""
        with self.reader.snapshot() as view:
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
            return view.entries(namespace, partitions, after or "", limit)

    def new_key(self, namespace):
        """A fresh random key whose partition this instance serves, so creating it needs
        no redirect."""
        with self.reader.snapshot() as view:
            routing.check_consumer(view, self.settings)
            partitions = routing.topic_facts(view, namespace, self.settings).partitions
            mine = {
                row.partition
                for row in view.partitions(namespace)
                if row.state == cache.READY
            }
        if not mine:
            raise NotServing(
                f"This instance serves no partition of {namespace!r} right now.", wait=2
            )
        while True:  # expected tries: partitions / len(mine)
            key = uuid.uuid4().hex
            if partition_for(key, partitions) in mine:
                return key

    # Writes

    def put(self, namespace, key, value, condition=Condition()):
        """Write `value` under `key` if `condition` holds; `value` may be a function of
        the current Entry."""
        route = self._route(namespace, key)
        with self.locks.hold(namespace, key) as slot:
            current = self._current_under_lock(route, slot)
            condition.check(current)
            new_value = value(current) if callable(value) else value
            payload = _encoded(new_value)
            self._check_size(route, payload)
            version, applied = self._write(route, slot, payload, condition, current)
        entry = Entry(key, new_value, version)
        created = current is None
        return WriteResult(entry, version, applied, created, condition.constrains)

    def delete(self, namespace, key, condition=Condition()):
        """Write a tombstone for an existing `key`; EntryNotFound when there is none."""
        condition = dataclasses.replace(condition, exists=True)
        route = self._route(namespace, key)
        with self.locks.hold(namespace, key) as slot:
            current = self._current_under_lock(route, slot)
            condition.check(current)
            version, applied = self._write(route, slot, None, condition, current)
        return WriteResult(None, version, applied, False, conditional=True)

    def _route(self, namespace, key):
        with timing.phase(timing.ROUTE), self.reader.snapshot() as view:
            return routing.route(view, self.settings, namespace, key)

    def _current_under_lock(self, route, slot):
        """The entry as of every write acknowledged before: first wait for the bucket's
        last write, and for a partition that came here recently, for Kafka's end offset
        too."""
        if slot.last is not None:
            namespace, partition, offset = slot.last
            if not self.wait_applied(namespace, partition, offset):
                raise NotServing(
                    "A previous write to this key is not applied yet; try again.",
                    code="write_pending",
                )
        with timing.phase(timing.CACHE), self.reader.snapshot() as view:
            ready_at = view.ready_at(route.namespace, route.partition)
            entry = self._entry(view, route)
        recent = self.settings.produce_timeout + 2
        if ready_at is not None and time.time() - ready_at < recent:
            # The previous owner's producer may still deliver a write after the end
            # offset this instance restored to (for up to its delivery timeout): judge
            # no condition before seeing it.
            self._catch_up(route)
            with self.reader.snapshot() as view:
                entry = self._entry(view, route)
        return entry

    def _write(self, route, slot, payload, condition, current):
        """Produce the record (carrying the version it is based on when `condition`
        constrains it) and settle its outcome: (Version, applied here)."""
        headers = ()
        if condition.constrains:
            based = current.version if current is not None else None
            based = None if based is None else (based.partition, based.offset)
            headers = (conditions.BasedOn(based).header(),)
        with timing.phase(timing.PRODUCE):
            written = self._produce(route, payload, headers)
        slot.remember(route.namespace, written.partition, written.offset)
        version = Version(written.partition, written.offset)
        with timing.phase(timing.APPLY_WAIT):
            applied = self.wait_applied(
                route.namespace, written.partition, written.offset
            )
        if applied and condition.constrains:
            self._raise_if_rejected(route, version)
        # Acknowledge only under a lease still held: after a pause this instance may
        # no longer be the one that answers for the partition.
        return version, applied and self._serving()

    def _produce(self, route, payload, headers):
        """Send through the breaker; replace a producer that can no longer send."""
        attempt = self.breaker.attempt()
        if attempt is None:
            raise StoreUnavailable(
                "Writes to Kafka are failing on this instance; nothing was written.",
                wait=2,
            )
        with attempt:
            producer = self.producer()
            try:
                written = producer.send(
                    route.topic, route.partition, route.key.encode(), payload, headers
                )
            except (StoreUnavailable, WriteOutcomeUnknown):
                self.breaker.failed()
                self._replace_if_stuck(producer)
                raise
        self.breaker.succeeded()
        return written

    def _raise_if_rejected(self, route, version):
        with self.reader.snapshot() as view:
            rejection = view.rejection(
                route.namespace, version.partition, version.offset
            )
        if rejection is not None:
            _, current = rejection
            raise PreconditionFailed(
                "Another write to this key landed first in the log, so this one was "
                "recorded but took no effect.",
                None if current is None else f'"{current}"',
            )

    def _serving(self):
        with self.reader.snapshot() as view:
            member = view.member() if view is not None else None
        return routing.serving(member, self.settings)

    def _check_size(self, route, payload):
        key_bytes = len(route.key.encode("utf-8"))
        limit = route.max_message_bytes - log.RECORD_OVERHEAD - key_bytes
        if len(payload) > limit:
            raise RecordTooLarge(
                f"The value is {len(payload)} bytes; this namespace's topic takes at "
                f"most {limit} for this key."
            )

    def wait_applied(self, namespace, partition, offset, timeout=None):
        """Wait until this instance's cache has applied `offset`; False if it has not in
        time."""
        timeout = self.settings.apply_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        conn, pause = self.reader.connection(), 0.0005
        while True:
            state = cache.position(conn, namespace, partition) if conn else None
            if state is not None and state.position > offset:
                return True
            revoked = state is not None and state.state == cache.REVOKED
            if time.monotonic() >= deadline or revoked:
                return False
            time.sleep(pause)
            pause = min(pause * 2, 0.005)

    def _catch_up(self, route):
        with self._producer_lock:
            if self._admin is None:
                timeout_ms = int(self.settings.produce_timeout * 1000)
                self._admin = log.open_admin(self.settings, timeout_ms=timeout_ms)
        end = self._admin.offsets(route.topic, [route.partition])[route.partition]
        if end > 0 and not self.wait_applied(route.namespace, route.partition, end - 1):
            raise NotServing(
                f"Partition {route.partition} has not caught up with Kafka's end "
                "offset "
                f"{end} yet.",
                code="not_caught_up",
                partition=route.partition,
            )

    def producer(self):
        with self._producer_lock:
            if self._producer is None:
                self._producer = log.Producer(
                    self.settings, self.settings.produce_timeout
                )
            return self._producer

    def _replace_if_stuck(self, producer):
        """After a failed write: drop a producer that can no longer send, so the next
        write makes a new one (its close waits in the background)."""
        if not producer.stuck():
            return
        logger.warning("replacing a Kafka producer that can no longer send")
        with self._producer_lock:
            if self._producer is producer:
                self._producer = None
        threading.Thread(target=producer.close, args=(0,), daemon=True).start()

    def close(self):
        for client in (self._producer, self._admin):
            if client is not None:
                client.close()

    @staticmethod
    def _entry(view, route):
        row = view.entry(route.namespace, route.key)
        # A row written to another partition by a foreign producer is not this key's.
        if row is None or row.partition != route.partition:
            return None
        return Entry.from_row(route.key, row)


def _encoded(value):
    """The record value of `value`; InvalidValue (400) for what no reader could read
    back."""
    try:
        return values.encode(value)
    except values.ValueRefused as exc:
        raise InvalidValue(exc.detail, exc.code) from None


_repositories = {}


def get_repository():
    """This process's repository for the settings in force (one producer per process,
    made after fork)."""
    settings = store_settings()
    key = (os.getpid(), id(settings))
    if key not in _repositories:
        for (pid, _), stale in _repositories.items():
            # A forked child must not touch its parent's producer.
            if pid == os.getpid():
                stale.close()
        _repositories.clear()
        _repositories[key] = Repository(settings)
    return _repositories[key]
