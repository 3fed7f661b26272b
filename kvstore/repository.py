"""The repository: get, put, delete and list entries of a namespace, for the views.

Reads come from the cache (kvstore.reads); writes are routed, serialised per key,
produced to Kafka, and answered only once this instance's cache has applied them
(read-your-writes), or honestly as not yet applied; a retried idempotent write gets
its first answer back.
"""

import dataclasses
import json
import logging
import os
import threading
import time
import uuid

from kvstore import (
    cache,
    conditions,
    ends,
    idempotency,
    locks,
    log,
    positions,
    reads,
    routing,
    timing,
    values,
    waiting,
    writes,
)
from kvstore.conf import store_settings
from kvstore.entries import ANY, Condition, Entry, Version, WriteResult  # noqa: F401
from kvstore.errors import (
    IdempotencyKeyReused,
    InvalidValue,
    NotServing,
    PreconditionFailed,
    RecordTooLarge,
    StoreUnavailable,
    WriteOutcomeUnknown,
)
from kvstore.partitioner import partition_for

logger = logging.getLogger(__name__)
POSITION_HEADER = positions.HEADER


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
        self.slots = waiting.Slots(
            waiting.slots_path(settings.cache_path), settings.max_watches
        )
        self._ends = ends.EndOffsets(self._ask_end_offset)
        self.reads = reads.Reads(settings, self.reader, self._end_offset)
        # Reads are the collaborator's; the views ask the repository for everything.
        self.get, self.changed = self.reads.get, self.reads.changed
        self.list, self.local_rows = self.reads.list, self.reads.local_rows

    # Reads

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

    def put(self, namespace, key, value, condition=Condition(), idem=None):
        """Write `value` under `key` if `condition` holds; `value` may be a function of
        the current Entry. With `idem` (an idempotency.Idempotent), a request already
        answered gets its first answer back and writes nothing."""
        route = self._route(namespace, key)
        with self.locks.hold(namespace, key) as slot:
            current = self._current_under_lock(route, slot)
            answered = self._answered(route, idem)
            if answered is not None:
                return self._replayed(route, answered)
            condition.check(current)
            new_value = value(current) if callable(value) else value
            payload = _encoded(new_value)
            self._check_size(route, payload)
            outcome = idempotency.CREATED if current is None else idempotency.REPLACED
            headers = idem.headers(outcome) if idem is not None else ()
            version, applied = self._write(
                route, slot, payload, condition, current, headers
            )
        replay = self._outcome(route, version, applied, condition, idem)
        if replay is not None:
            return replay
        entry = Entry(key, new_value, version)
        created = current is None
        return WriteResult(entry, version, applied, created, condition.constrains)

    def delete(self, namespace, key, condition=Condition(), idem=None):
        """Write a tombstone for an existing `key`; EntryNotFound when there is none."""
        condition = dataclasses.replace(condition, exists=True)
        route = self._route(namespace, key)
        with self.locks.hold(namespace, key) as slot:
            current = self._current_under_lock(route, slot)
            answered = self._answered(route, idem)
            if answered is not None:
                return self._replayed(route, answered)
            condition.check(current)
            headers = idem.headers(idempotency.DELETED) if idem is not None else ()
            version, applied = self._write(
                route, slot, None, condition, current, headers
            )
        replay = self._outcome(route, version, applied, condition, idem)
        if replay is not None:
            return replay
        return WriteResult(None, version, applied, False, conditional=True)

    def _route(self, namespace, key):
        with timing.phase(timing.ROUTE), self.reader.snapshot() as view:
            return routing.route(view, self.settings, namespace, key)

    def _answered(self, route, idem):
        """The first answer to `idem`'s key for this entry, if one is known within the
        window; IdempotencyKeyReused when it answered another request."""
        if idem is None:
            return None
        with self.reader.snapshot() as view:
            answered = view.idempotent(route.namespace, route.key, idem.scope)
        window_ms = self.settings.idempotency_window * 1000
        if answered is None or time.time() * 1000 - answered.at >= window_ms:
            return None
        if answered.request != idem.request:
            raise IdempotencyKeyReused()
        return answered

    def _replayed(self, route, answered):
        """The WriteResult of a first answer (PreconditionFailed if that was 412)."""
        version = Version(answered.partition, answered.offset)
        if answered.outcome == idempotency.REJECTED:
            current = None if answered.current is None else f'"{answered.current}"'
            raise _positioned(
                PreconditionFailed(
                    "This request was answered before: its record took no effect.",
                    current,
                ),
                route.namespace,
                version,
            )
        value = None if answered.value is None else json.loads(answered.value)
        entry = None if answered.value is None else Entry(route.key, value, version)
        created = answered.outcome == idempotency.CREATED
        return WriteResult(entry, version, True, created, replayed=True)

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
            entry = self.reads.entry(view, route)
        recent = self.settings.produce_timeout + 2
        if ready_at is not None and time.time() - ready_at < recent:
            # The previous owner's producer may still deliver a write after the end
            # offset this instance restored to (for up to its delivery timeout): judge
            # no condition before seeing it.
            self.reads.catch_up(route)
            with self.reader.snapshot() as view:
                entry = self.reads.entry(view, route)
        return entry

    def _write(self, route, slot, payload, condition, current, headers=()):
        """Produce the record (carrying the version it is based on when `condition`
        constrains it, and `headers`) and wait for it: (Version, applied here)."""
        if condition.constrains:
            based = current.version if current is not None else None
            based = None if based is None else (based.partition, based.offset)
            headers = (conditions.BasedOn(based).header(), *headers)
        with timing.phase(timing.PRODUCE):
            written = self._produce(route, payload, headers)
        slot.remember(route.namespace, written.partition, written.offset)
        version = Version(written.partition, written.offset)
        with timing.phase(timing.APPLY_WAIT):
            applied = self.wait_applied(
                route.namespace, written.partition, written.offset
            )
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

    def _outcome(self, route, version, applied, condition, idem):
        """Once the record is applied here: the first answer to replay when it repeated
        an idempotent request (it took no effect); PreconditionFailed when the log
        rejected it; None when it took effect (or is not known yet)."""
        if not applied or not (condition.constrains or idem):
            return None
        with self.reader.snapshot() as view:
            rejection = view.rejection(
                route.namespace, version.partition, version.offset
            )
        answered = self._answered(route, idem)
        if answered is not None and answered.offset != version.offset:
            return self._replayed(route, answered)
        if rejection is not None:
            _, current = rejection
            raise _positioned(
                PreconditionFailed(
                    "Another write to this key landed first in the log, so this one "
                    "was recorded but took no effect.",
                    None if current is None else f'"{current}"',
                ),
                route.namespace,
                version,
            )
        return None

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
        return waiting.until_applied(
            self.reader, self.reads.changes, namespace, partition, offset, timeout
        )

    def _end_offset(self, route):
        """Kafka's end offset of the route's partition, asked now (or by a request
        sent after this call began)."""
        return self._ends.get(route.topic, route.partition)

    def _ask_end_offset(self, topic, partition):
        with self._producer_lock:
            if self._admin is None:
                timeout_ms = int(self.settings.produce_timeout * 1000)
                self._admin = log.open_admin(self.settings, timeout_ms=timeout_ms)
        return self._admin.offsets(topic, [partition])[partition]

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


def _positioned(error, namespace, version):
    """`error` answering with the position of the record it is about."""
    error.headers = {
        POSITION_HEADER: str(
            positions.single(namespace, version.partition, version.offset)
        )
    }
    return error


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
