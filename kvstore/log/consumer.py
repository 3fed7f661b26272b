"""The consumer-group member the consumer process reads with."""

import collections
import threading

import kafka.errors
from kafka import (
    ConsumerRebalanceListener,
    KafkaConsumer,
    OffsetAndMetadata,
    TopicPartition,
)

from kvstore.errors import StoreUnavailable
from kvstore.log.assignor import CoPartitionedAssignor
from kvstore.log.common import client_config, translated as _translated


class _Events(ConsumerRebalanceListener):
    """Records rebalance events for the main loop. kafka-python calls these on its IO
    thread, where blocking calls fail, so they do nothing but append."""

    def __init__(self):
        self.queue = collections.deque()
        self.lock = threading.Lock()

    def _record(self, kind, partitions):
        with self.lock:
            self.queue.append(
                (kind, sorted((tp.topic, tp.partition) for tp in partitions))
            )

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


class GroupConsumer:
    """This instance's consumer-group member: subscribes to the namespace topics,
    reports rebalances as events, and lets its owner seek, poll records and commit
    positions. Partitions are (topic, partition).
    """

    def __init__(self, settings, topics, session_timeout_ms, max_poll_records=5000):
        self._events = _Events()
        self._assignor = CoPartitionedAssignor(settings.advertised_url)
        try:
            self._consumer = KafkaConsumer(
                group_id=settings.group_id,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                partition_assignment_strategy=[self._assignor],
                session_timeout_ms=session_timeout_ms,
                heartbeat_interval_ms=max(100, session_timeout_ms // 4),
                max_poll_records=max_poll_records,
                fetch_max_wait_ms=100,
                max_partition_fetch_bytes=8 * 1024 * 1024,
                allow_auto_create_topics=False,
                # The group leader re-plans when partitions appear; stale metadata would
                # delay that.
                metadata_max_age_ms=5000,
                **client_config(settings),
            )
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

    def poll(self, timeout_ms):
        """{(topic, partition): [record]}; a record has .offset, .key, .value (None:
        tombstone), .timestamp."""
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
        offsets = {
            TopicPartition(t, p): OffsetAndMetadata(o, "", -1)
            for (t, p), o in positions.items()
        }
        try:
            self._consumer.commit_async(offsets)
        except kafka.errors.KafkaError:
            # A commit lost in a rebalance is made good by the next one; the cache is
            # the checkpoint.
            pass

    def close(self, positions=None):
        """Commit `positions` if any, then leave the group at once (the partitions move
        without waiting for a session timeout)."""
        if positions:
            offsets = {
                TopicPartition(t, p): OffsetAndMetadata(o, "", -1)
                for (t, p), o in positions.items()
            }
            try:
                self._consumer.commit(offsets, timeout_ms=2000)
            except kafka.errors.KafkaError:
                pass  # leaving matters more than the last commit
        self._consumer.close(autocommit=False, timeout_ms=5000)
