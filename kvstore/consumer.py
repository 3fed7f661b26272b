"""The consumer process: this instance's one consumer-group member and the only writer
of its cache.

It restores each partition it is given (from the cache's checkpoint, or from the
beginning when there is none or it cannot be trusted), serves it only once caught up,
applies new records in batches, and keeps a heartbeat so the web workers know it is
alive.
"""

import dataclasses
import fcntl
import logging
import os
import time

from kvstore import apply, cache, drain, idempotency, lease, locks, log, pacing
from kvstore import rejoin, settle, topics, wake
from kvstore.errors import KafkaTransient, MemberFenced, StoreUnavailable

logger = logging.getLogger(__name__)

HEARTBEAT_EVERY = 0.5
# Group offsets are for Kafka's tools (the cache holds the real checkpoint); committing
# after every batch cost the broker as much CPU as the writes themselves, so commits are
# at most this often.
COMMIT_EVERY = 1.0
SYNCED_EVERY = 2.0
PROGRESS_EVERY = 2.0
PRUNE_EVERY = 600.0  # settled rejections are kept at least this long, for writers
WARN_EVERY = 5.0  # a Kafka that keeps failing is logged at most this often
# kafka-python's poll waits its whole timeout when no record comes, even after an
# assignment arrived meanwhile: until this member has its first assignment (a start, a
# restart after a crash), poll briefly so it is taken in at once.
POLL_MS, POLL_MS_UNASSIGNED = 100, 10


class AlreadyRunning(Exception):
    """Another consumer process already writes this cache."""


@dataclasses.dataclass
class Held:
    """A partition this member holds: where the cache is, and where restoring ends (None
    once ready)."""

    namespace: str
    position: int
    target: int | None


class ConsumerProcess:
    def __init__(self, settings, progress=lambda message: None):
        self.settings = settings
        self.progress = progress
        self.namespace_of = {topic: ns for ns, topic in settings.topics().items()}
        self.held = {}  # (topic, partition) -> Held
        self.applied_total = 0
        self.rebalances = 0  # assignments received, for the metrics
        self.started_at = time.time()
        self._restore = _RestoreMeter()
        self._view = None
        self._last = {
            "heartbeat": 0.0,
            "synced": 0.0,
            "progress": 0.0,
            "commit": 0.0,
            "pruned": 0.0,
            "lease": 0.0,
        }
        self._lease = None
        # (topic, partition) -> position applied but not yet committed
        self._uncommitted = {}
        # Assigned, but not taken in yet: Kafka did not tell their offsets so far.
        self._pending = set()
        self._warned = 0.0
        self._watchdog = rejoin.Watchdog(settings.session_timeout_ms)

    def run(self, should_stop):
        """Run until `should_stop()` is true, then stop serving, leave the group at once
        and drain: stay until the other members know the new owners."""
        with _exclusive(self.settings.cache_path):
            conn = cache.connect(self.settings.cache_path)
            self.writer = apply.Writer(conn)
            # Nothing is served until this run has assigned and restored it.
            self.writer.revoke_all()
            locks.KeyLocks(locks.path_for(self.settings.cache_path), ()).reset()
            logger.info("starting (pid %s)", os.getpid())
            self.retention_ms, self.window_ms = self._record_topics()
            self._heartbeat()
            self.unsettled = settle.load_unsettled(conn)
            settler = settle.Settler(self.settings, conn, self.unsettled)
            # Revocations are written from kafka-python's IO thread, on a connection
            # of their own (see log.consumer._Events).
            self._revoker = apply.Writer(cache.connect(self.settings.cache_path))
            self._bell = wake.Bell(self.settings.cache_path)
            self.group = self._member()
            try:
                while not should_stop():
                    self._step(conn, settler)
            finally:
                logger.info("stopping: serving nothing, leaving the group")
                self.writer.draining()
                self.writer.revoke_all(keep_view=True)
                self.writer.lease(None)
                self.group.close(self._uncommitted)
                settler.close()
                drain.until_peers_know(self.settings, self.writer, self._view)
                self._heartbeat(alive=False)
                self._revoker.conn.close()
                self._bell.close()
                conn.close()

    def _member(self):
        """A new consumer-group member (its rebalance callback writes revocations at
        once, from kafka-python's IO thread, on a connection of its own); its fetches
        return at once until concurrent writes show (kvstore.pacing)."""
        self._pacing = pacing.FetchPacing()
        return log.GroupConsumer(
            self.settings,
            self.namespace_of,
            self.settings.session_timeout_ms,
            on_revoke=self._revoke_now,
        )

    def _revoke_now(self, partitions):
        """From kafka-python's IO thread: stop serving these before the next round
        can give them away, and wake the waiters on them."""
        self._revoker.revoke(self._keys(partitions))
        self._bell.ring()

    def _rejoin(self, reason):
        """Serve nothing, leave the old member behind, join as a new one (see
        kvstore.rejoin)."""
        logger.warning("%s: joining the group again as a new member", reason)
        self._watchdog.rejoined()
        try:
            member = self._member()
        except StoreUnavailable as exc:  # Kafka out of reach: the old one, for now
            self._warn(exc)
            return
        self.writer.revoke(self._keys(self.held))
        self.held, self._pending, self._uncommitted = {}, set(), {}
        self._lease = None
        self.writer.lease(None)
        self.group.abandon()
        self.group = member
        self._view = None  # poll briefly until the new member's first assignment

    def _keys(self, partitions):
        return [(self.namespace_of[t], p) for t, p in partitions]

    def _record_topics(self):
        """Verify the namespace topics and store their facts for the web side; {topic:
        delete.retention.ms}."""
        with log.admin(self.settings) as admin:
            existing = admin.describe(list(self.namespace_of))
        plan = topics.plan(self.settings, existing)
        if plan.create:
            raise StoreUnavailable(
                f"missing namespace topics {', '.join(plan.create)}: run `manage.py "
                "kvstore_init`"
            )
        facts = [
            (
                self.namespace_of[name],
                name,
                state.partitions,
                int(state.configs["max.message.bytes"]),
                int(state.configs["delete.retention.ms"]),
                int(state.configs.get("min.compaction.lag.ms") or 0),
            )
            for name, state in existing.items()
        ]
        self.writer.set_topics(facts)
        retention = {fact[1]: fact[4] for fact in facts}
        # Conditions are judged on records younger than half the compaction lag
        # (kvstore.conditions); with no lag configured every record is judged.
        lags = [
            int(state.configs.get("min.compaction.lag.ms") or 0)
            for state in existing.values()
        ]
        window = min(lags, default=0) // 2
        if idempotency.outlasts(self.settings.idempotency_window, min(lags, default=0)):
            logger.warning(
                "KVSTORE_IDEMPOTENCY_WINDOW is longer than half the topics' "
                "min.compaction.lag.ms (kvstore.W005, docs/WATCH.md)"
            )
        return retention, window or None

    def _step(self, conn, settler):
        fetched = self._poll(self.group)
        group = self.group  # a new member if the poll had to join again
        fresh = self._handle_events(group)
        view = group.view()
        if view is not None and view != self._view:
            self.rebalances += 1
            self.writer.set_group(view)
            self._view = view
            logger.info("generation %s: owners %s", view.generation, view.owners)
        batch, moved = self._batch(fetched, fresh)
        batching = self._pacing.observe(sum(len(r) for r, _ in batch.values()))
        if batching is not None:
            if batching:
                group.batch_fetches(pacing.BATCH_WAIT_MS, pacing.BATCH_BYTES)
            else:
                group.fetch_at_once()
            logger.debug("fetches %s", "batch" if batching else "return at once")
        if batch:
            self.applied_total += apply.apply_batch(
                conn,
                batch,
                window_ms=self.window_ms,
                unsettled=self.unsettled,
                idempotency_ms=self.settings.idempotency_window * 1000,
            )
            self._uncommitted.update({tp: self.held[tp].position for tp in moved})
        self._finish_restores(group)
        if batch or self.writer.moved:
            # Waiting writers and readers look at the cache again now (kvstore.wake).
            self.writer.moved = False
            self._bell.ring()
        self._renew(group)
        if group.fenced():
            self._watchdog.fenced()  # raises when another process has our id
            self._rejoin("Kafka fenced this member")
            return
        overdue = self._watchdog.overdue(self._lease, lease.now())
        if overdue and group.coordinator_known():
            self._rejoin(f"no membership lease for {self._watchdog.after:.0f} s")
            return
        ready = {
            (held.namespace, tp[1]) for tp, held in self.held.items() if not held.target
        }
        settler.settle(ready, self.settings.topics(), self._lease)
        self._periodic(group)

    def _poll(self, group):
        """Records fetched; none when Kafka fails for a moment (a broker killed or
        moving): the loop goes on, and the lease lapses by itself if the group
        coordinator stays out of reach."""
        waiting = self._view is None or self._pending
        try:
            return group.poll(timeout_ms=POLL_MS_UNASSIGNED if waiting else POLL_MS)
        except KafkaTransient as exc:
            self._warn(exc)
            return {}
        except MemberFenced as exc:
            self._watchdog.fenced()  # raises when another process has our id
            self._rejoin(str(exc))
            return {}

    def _warn(self, exc):
        if time.monotonic() - self._warned >= WARN_EVERY:
            logger.warning("%s; retrying", exc)
            self._warned = time.monotonic()

    def _renew(self, group):
        """Write the membership lease into the cache when it moved: a lapse at once, a
        renewal at most every half second (the deadline itself keeps it safe)."""
        until = group.lease_until()
        if until == self._lease:
            return
        lapsed = until is None or (self._lease is not None and until < self._lease)
        if until is None and self._lease is not None:
            logger.info("lease ends: %s", group.lease_state())
        if lapsed or time.monotonic() - self._last["lease"] >= HEARTBEAT_EVERY:
            self.writer.lease(until)
            self._lease, self._last["lease"] = until, time.monotonic()

    def _handle_events(self, group):
        """Apply rebalance events in order; return the partitions (re)assigned now,
        whose fetched records predate our seek and are dropped."""
        for kind, partitions in group.events():
            if kind == "assigned":
                self._pending.update(partitions)
            else:
                self.writer.revoke([(self.namespace_of[t], p) for t, p in partitions])
                for tp in partitions:
                    self.held.pop(tp, None)
                    self._uncommitted.pop(tp, None)
                    self._pending.discard(tp)
                logger.info("%s: %s", kind, partitions)
        if not self._pending:
            return set()
        try:
            self._assign(group, sorted(self._pending))
        except KafkaTransient as exc:
            self._warn(exc)  # they stay pending (not served) until Kafka answers
            return set()
        fresh, self._pending = self._pending, set()
        return fresh

    def _assign(self, group, partitions):
        offsets = group.offsets(partitions)
        for (topic, partition), (start, end) in offsets.items():
            namespace = self.namespace_of[topic]
            position, wipe = self._resume_point(topic, namespace, partition, start, end)
            state = self.writer.start_restore(namespace, partition, position, end, wipe)
            group.seek(topic, partition, position)
            self.held[(topic, partition)] = Held(
                namespace, position, end if state == cache.RESTORING else None
            )
            if state == cache.RESTORING:
                self._restore.add(end - position)
            logger.info(
                "assigned %s/%s: from %s to %s%s",
                topic,
                partition,
                position,
                end,
                " (wiped)" if wipe else "",
            )

    def _resume_point(self, topic, namespace, partition, start, end):
        """(position to read from, wipe the partition first?) for a newly assigned
        partition."""
        checkpoint = self.writer.checkpoint(namespace, partition)
        if checkpoint is None:
            return start, True
        position, synced_at = checkpoint
        too_old = (time.time() - synced_at) * 1000 > self.retention_ms[topic]
        if position < start or position > end or too_old:
            # Compaction may have removed tombstones this cache never saw (or the topic
            # was recreated): the rows cannot be trusted, rebuild the partition from the
            # start.
            logger.warning(
                "checkpoint of %s/%s not trusted (position %s, log %s..%s, synced "
                "%.0fs ago): rebuilding",
                topic,
                partition,
                position,
                start,
                end,
                time.time() - synced_at,
            )
            return start, True
        return position, False

    def _batch(self, fetched, fresh):
        """The records to apply, as `apply_batch` takes them, and the partitions they
        move."""
        batch, moved = {}, []
        for tp, records in fetched.items():
            held = self.held.get(tp)
            if held is None or tp in fresh:
                continue
            records = [r for r in records if r.offset >= held.position]
            if records:
                held.position = records[-1].offset + 1
                batch[(held.namespace, tp[1])] = (records, held.position)
                moved.append(tp)
                self._restore.applied(len(records), restoring=held.target is not None)
        return batch, moved

    def _finish_restores(self, group):
        for (topic, partition), held in self.held.items():
            if held.target is None:
                continue
            # The consumer's position also moves past records the log no longer has
            # (compaction).
            reached = max(held.position, group.position(topic, partition) or 0)
            if reached >= held.target:
                held.target = None
                self.writer.mark_ready(held.namespace, partition)
                logger.info("ready %s/%s at %s", topic, partition, reached)
        if self._restore.active and all(h.target is None for h in self.held.values()):
            self.progress(self._restore.finish())

    def _periodic(self, group):
        now = time.monotonic()
        if self._uncommitted and now - self._last["commit"] >= COMMIT_EVERY:
            group.commit(self._uncommitted)
            self._uncommitted, self._last["commit"] = {}, now
        if now - self._last["pruned"] >= PRUNE_EVERY:
            self._prune()
            self._last["pruned"] = now
        if now - self._last["heartbeat"] >= HEARTBEAT_EVERY:
            self._heartbeat()
            self._last["heartbeat"] = now
        if now - self._last["synced"] >= SYNCED_EVERY:
            ends = {
                (held.namespace, tp[1]): group.highwater(*tp)
                for tp, held in self.held.items()
            }
            ends = {key: end for key, end in ends.items() if end is not None}
            caught_up = [
                (held.namespace, tp[1])
                for tp, held in self.held.items()
                if held.target is None
                and ends.get((held.namespace, tp[1]), 0) <= held.position
            ]
            self.writer.end_offsets(ends)
            if caught_up:
                self.writer.synced(caught_up)
            self._last["synced"] = now
        if self._restore.active and now - self._last["progress"] >= PROGRESS_EVERY:
            remaining = sum(
                max(0, h.target - h.position)
                for h in self.held.values()
                if h.target is not None
            )
            self.progress(self._restore.report(remaining))
            self._last["progress"] = now

    def _prune(self):
        """Forget what is no longer needed: settled rejections once older than the
        tombstones Kafka keeps (a watch resuming from before them gets 410, see
        kvstore.watch.history), answers of idempotent writes past their window."""
        kept = max([PRUNE_EVERY * 1000, *self.retention_ms.values()]) / 1000
        self.writer.prune_rejections(time.time() - kept)
        window_ms = self.settings.idempotency_window * 1000
        self.writer.prune_answers(time.time() * 1000 - window_ms)

    def _heartbeat(self, alive=True):
        self.writer.heartbeat(
            self.settings.advertised_url,
            os.getpid(),
            self.started_at,
            (self.applied_total, self.rebalances),
            alive,
            lease_until=self._lease,
        )


class _RestoreMeter:
    """Counts a restore's records for the progress line."""

    def __init__(self):
        self.active, self.records, self.began = False, 0, 0.0

    def add(self, expected):
        if not self.active and expected > 0:
            self.active, self.records, self.began = True, 0, time.monotonic()

    def applied(self, count, restoring):
        if self.active and restoring:
            self.records += count

    def rate(self):
        return self.records / max(time.monotonic() - self.began, 1e-6)

    def report(self, remaining):
        return (
            f"restoring: {self.records} records applied ({self.rate():.0f}/s), "
            f"about {remaining} to go"
        )

    def finish(self):
        self.active = False
        elapsed = time.monotonic() - self.began
        return (
            f"restored {self.records} records in {elapsed:.1f}s "
            f"({self.rate():.0f}/s); serving"
        )


class _exclusive:
    """Hold an exclusive lock beside the cache file: one consumer process per cache."""

    def __init__(self, cache_path):
        self.path = cache_path.with_name(cache_path.name + ".consumer.lock")

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(self.path, "w")
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.file.close()
            raise AlreadyRunning(
                f"another kvstore_consume already writes {self.path.with_suffix('')}"
            ) from None
        return self

    def __exit__(self, *exc):
        self.file.close()
