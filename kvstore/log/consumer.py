"""The consumer-group member the consumer process reads with, and the lease it holds.

kafka-python keeps the group's state on its IO thread. Two hooks report from there:
`_Events` (rebalances; a revocation also reaches the cache before the next round can
give the partitions away) and `_LeaseCoordinator` (when the coordinator last answered
this member), so the store stops answering before anyone else may start.
"""

import collections
import re
import threading

import kafka.errors
from kafka import (
    ConsumerRebalanceListener,
    KafkaConsumer,
    OffsetAndMetadata,
    TopicPartition,
)
from kafka.coordinator.consumer import ConsumerCoordinator

from kvstore import lease
from kvstore.errors import StoreUnavailable
from kvstore.log.assignor import CoPartitionedAssignor
from kvstore.log.common import consumer_config, translated as _translated

# With fetch_min_bytes=1, a fetch returns with the first record; this bounds only the
# wait when there is none.
FETCH_WAIT_MS = 100


class _Events(ConsumerRebalanceListener):
    """Records rebalance events for the main loop. kafka-python calls these on its IO
    thread, where blocking Kafka calls fail, so they only append, and for revocations
    call `on_revoke` (a quick cache write): cooperative rebalancing rejoins right after
    this callback returns, and the next round may hand these partitions to another
    member, so this instance must have stopped serving them by then."""

    def __init__(self, on_revoke, assignor):
        self.queue = collections.deque()
        self.lock = threading.Lock()
        self.on_revoke = on_revoke
        self.assignor = assignor

    def _record(self, kind, partitions):
        partitions = sorted((tp.topic, tp.partition) for tp in partitions)
        if kind == "lost":
            self.assignor.forget()
        if kind != "assigned" and partitions:
            self.on_revoke(partitions)
        with self.lock:
            self.queue.append((kind, partitions))

    def on_partitions_revoked(self, revoked):
        self._record("revoked", revoked)

    def on_partitions_assigned(self, assigned):
        self._record("assigned", assigned)

    def on_partitions_lost(self, lost):
        self._record("lost", lost)

    def drain(self):
        with self.lock:
            events = list(self.queue)
            self.queue.clear()
        return events


class _LeaseCoordinator(ConsumerCoordinator):
    """kafka-python's coordinator, remembering when the group coordinator last vouched
    for this member: the send time of the last heartbeat it answered without error (a
    "rebalance in progress" answer also renews the session), or of the last JoinGroup
    that a SyncGroup completed. Heartbeats are sent one at a time, so the send time
    taken here is the request's."""

    lease_anchor = None  # (lease.now() at send, generation id, member id)
    # Kafka fenced this member; kafka-python then stops heartbeating and never
    # rejoins by itself, so the consumer process must (kvstore.rejoin).
    fenced = False

    async def _send_heartbeat_request(self):
        anchor = self._anchor()
        try:
            result = await super()._send_heartbeat_request()
        except kafka.errors.RebalanceInProgressError:
            self.lease_anchor = anchor
            raise
        except kafka.errors.FencedInstanceIdError:
            self.fenced = True
            raise
        self.lease_anchor = anchor
        return result

    async def _do_join_and_sync_async(self):
        sent = lease.now()
        assignment = await super()._do_join_and_sync_async()
        generation = self._generation
        self.lease_anchor = (sent, generation.generation_id, generation.member_id)
        return assignment

    def _anchor(self):
        generation = self._generation
        return (lease.now(), generation.generation_id, generation.member_id)

    def lease_state(self):
        """Why there is no lease now, in words (for the log)."""
        anchor, stable = self.lease_anchor, self.generation_if_stable()
        if anchor is None:
            return "the coordinator never answered"
        if stable is None:
            return f"the group is rebalancing (state {self.state})"
        return (
            f"generation {stable.generation_id} is not the answered one "
            f"({anchor[1]})"
        )

    def lease_until(self, session_timeout_ms):
        """When this member's lease ends (lease clock), or None without one: the
        member must still be in the generation that the coordinator answered."""
        anchor, stable = self.lease_anchor, self.generation_if_stable()
        if anchor is None or stable is None:
            return None
        sent, generation, member = anchor
        if (stable.generation_id, stable.member_id) != (generation, member):
            return None
        return lease.until(sent, session_timeout_ms)


def instance_id(url):
    """A static group.instance.id from an advertised URL: a restarted instance takes
    its own partitions back at once, without a rebalance."""
    return "kvstore-" + re.sub(r"[^A-Za-z0-9._-]", "_", url)[:200]


class GroupConsumer:
    """This instance's consumer-group member: subscribes to the namespace topics,
    reports rebalances as events, holds the lease, and lets its owner seek, poll
    records and commit positions. Partitions are (topic, partition).
    """

    def __init__(
        self, settings, topics, session_timeout_ms, on_revoke, max_poll_records=5000
    ):
        self._assignor = CoPartitionedAssignor(settings.advertised_url)
        self._events = _Events(on_revoke, self._assignor)
        self.session_timeout_ms = session_timeout_ms
        try:
            self._consumer = KafkaConsumer(
                group_id=settings.group_id,
                group_instance_id=instance_id(settings.advertised_url),
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                partition_assignment_strategy=[self._assignor],
                session_timeout_ms=session_timeout_ms,
                heartbeat_interval_ms=max(100, session_timeout_ms // 5),
                max_poll_records=max_poll_records,
                fetch_max_wait_ms=FETCH_WAIT_MS,
                max_partition_fetch_bytes=8 * 1024 * 1024,
                allow_auto_create_topics=False,
                # The group leader re-plans when partitions appear; stale metadata would
                # delay that.
                metadata_max_age_ms=5000,
                **consumer_config(settings),
            )
            # Install the lease hooks before the first join (KafkaConsumer builds its
            # coordinator itself and offers no way to pass another class).
            self._consumer._coordinator.__class__ = _LeaseCoordinator
            # Know every topic's partitions before joining: a leader that assigns from
            # empty metadata hands out nothing.
            for topic in topics:
                self._consumer.partitions_for_topic(topic)
            self._consumer.subscribe(list(topics), listener=self._events)
        except kafka.errors.KafkaError as exc:
            raise StoreUnavailable(f"cannot join the consumer group: {exc}") from exc

    def events(self):
        """Rebalance events since the last call, in order:
        [("assigned"|"revoked"|"lost", [(topic, partition)])]."""
        return self._events.drain()

    def view(self):
        """The GroupView of the latest assignment (generation, partition index → owner
        URL), or None."""
        return self._assignor.view

    def lease_until(self):
        """When this member's lease ends (kvstore.lease clock), or None."""
        return self._consumer._coordinator.lease_until(self.session_timeout_ms)

    def lease_state(self):
        """Why this member holds no lease now, in words."""
        return self._consumer._coordinator.lease_state()

    def generation(self):
        stable = self._consumer._coordinator.generation_if_stable()
        return None if stable is None else stable.generation_id

    def batch_fetches(self, wait_ms, min_bytes):
        """Let each fetch wait at the broker up to `wait_ms` for `min_bytes`.
        kafka-python reads both from its fetcher's config whenever it builds a fetch
        request, and has no public way to change them."""
        config = self._consumer._fetcher.config
        config["fetch_min_bytes"], config["fetch_max_wait_ms"] = min_bytes, wait_ms

    def fetch_at_once(self):
        """Let each fetch return with the first record again, as it was made to."""
        self.batch_fetches(FETCH_WAIT_MS, 1)

    def poll(self, timeout_ms):
        """{(topic, partition): [record]}; a record has .offset, .key, .value (None:
        tombstone), .timestamp (ms) and .headers ([(name, bytes)])."""
        with _translated("poll"):
            fetched = self._consumer.poll(timeout_ms=timeout_ms)
        return {(tp.topic, tp.partition): records for tp, records in fetched.items()}

    def seek(self, topic, partition, offset):
        self._consumer.seek(TopicPartition(topic, partition), offset)

    def position(self, topic, partition):
        return self._consumer.position(TopicPartition(topic, partition))

    def highwater(self, topic, partition):
        """The end offset seen in the last fetch, or None."""
        return self._consumer.highwater(TopicPartition(topic, partition))

    def offsets(self, partitions):
        """{(topic, partition): (log start offset, end offset)}, asked of Kafka."""
        tps = [TopicPartition(t, p) for t, p in partitions]
        with _translated("list offsets"):
            starts = self._consumer.beginning_offsets(tps)
            ends = self._consumer.end_offsets(tps)
        return {(tp.topic, tp.partition): (starts[tp], ends[tp]) for tp in tps}

    def commit(self, positions):
        """Commit `{(topic, partition): next offset}` to the group, without waiting
        (tools show the lag)."""
        try:
            self._consumer.commit_async(_offsets(positions))
        except kafka.errors.KafkaError:
            # A commit lost in a rebalance is made good by the next one; the cache is
            # the checkpoint.
            pass

    def fenced(self):
        """Whether Kafka fenced this member (another joined with its
        group.instance.id): it will never be part of the group again."""
        return self._consumer._coordinator.fenced

    def coordinator_known(self):
        """Whether this member knows (and reaches) its group coordinator."""
        return not self._consumer._coordinator.coordinator_unknown()

    def abandon(self):
        """Close without committing or leaving: this member is past saving (fenced, or
        long without a lease), and another client takes its place."""
        try:
            self._consumer.close(autocommit=False, timeout_ms=1000)
        except Exception:  # noqa: BLE001 (whatever state it was left in)
            pass

    def close(self, positions=None):
        """Commit `positions` if any, then leave the group at once, so the partitions
        move without waiting for a session timeout."""
        if positions:
            try:
                self._consumer.commit(_offsets(positions), timeout_ms=2000)
            except kafka.errors.KafkaError:
                pass  # leaving matters more than the last commit
        # A static member does not send LeaveGroup on close (KIP-345): a crash or a
        # restart keeps its partitions for the session timeout. A deliberate stop
        # should hand them over now, so it leaves as a dynamic member would; the
        # request still names its group.instance.id.
        self._consumer._coordinator.is_dynamic_member = lambda: True
        self._consumer.close(autocommit=False, timeout_ms=5000)


def _offsets(positions):
    return {
        TopicPartition(t, p): OffsetAndMetadata(o, "", -1)
        for (t, p), o in positions.items()
    }
