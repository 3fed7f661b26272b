"""Reading partitions from offsets the caller picks, outside the consumer group (a plain
`assign()`): what a watch reads the log with. The web workers never join the group.
"""

from typing import NamedTuple

import kafka.errors
from kafka import KafkaConsumer, TopicPartition

from kvstore.errors import StoreUnavailable
from kvstore.log.common import consumer_config, translated as _translated


class Record(NamedTuple):
    """One record as the log holds it (value None: a tombstone); `timestamp` in ms,
    `headers` as ((name, bytes), ...)."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int
    headers: tuple


class PartitionReader:
    """Reads some partitions of one topic, each from where the caller seeks it."""

    def __init__(self, settings, topic, partitions, max_wait_ms=100):
        self.topic = topic
        self._tps = {p: TopicPartition(topic, p) for p in partitions}
        try:
            self._consumer = KafkaConsumer(
                group_id=None,
                enable_auto_commit=False,
                # A position below the log start (compaction never moves it, deleted
                # records do) reads from the start; the caller sees the gap.
                auto_offset_reset="earliest",
                fetch_max_wait_ms=max_wait_ms,
                max_poll_records=2000,
                max_partition_fetch_bytes=4 * 1024 * 1024,
                **consumer_config(settings),
            )
            self._consumer.assign(list(self._tps.values()))
        except kafka.errors.KafkaError as exc:
            raise StoreUnavailable(f"cannot read {topic}: {exc}") from exc

    def offsets(self):
        """{partition: (log start offset, end offset)}, asked of Kafka now."""
        tps = list(self._tps.values())
        with _translated(f"list offsets of {self.topic}"):
            starts = self._consumer.beginning_offsets(tps)
            ends = self._consumer.end_offsets(tps)
        return {tp.partition: (starts[tp], ends[tp]) for tp in tps}

    def seek(self, partition, offset):
        self._consumer.seek(self._tps[partition], offset)

    def position(self, partition):
        """The next offset this reader fetches from `partition`."""
        with _translated(f"read {self.topic}"):
            return self._consumer.position(self._tps[partition])

    def pause(self, partition):
        self._consumer.pause(self._tps[partition])

    def resume(self, partition):
        self._consumer.resume(self._tps[partition])

    def poll(self, timeout_ms):
        """{partition: [Record]} fetched since the last poll, each in offset order."""
        with _translated(f"read {self.topic}"):
            fetched = self._consumer.poll(timeout_ms=timeout_ms)
        return {
            tp.partition: [
                Record(
                    tp.partition,
                    r.offset,
                    r.key,
                    r.value,
                    r.timestamp,
                    tuple(r.headers or ()),
                )
                for r in records
            ]
            for tp, records in fetched.items()
        }

    def close(self):
        try:
            self._consumer.close(autocommit=False, timeout_ms=1000)
        except kafka.errors.KafkaError:
            pass  # nothing to hand back: this reader holds no group membership
