"""Bulk access to the log: a producer tuned for throughput, and reading a topic's latest
values."""

import time

import kafka.errors
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from kvstore.errors import StoreUnavailable
from kvstore.log.common import (
    client_config,
    producer_config,
    translated as _translated,
)


class BulkProducer:
    """Idempotent, acks=all, with linger and large batches: many records in flight,
    acknowledged together."""

    def __init__(self, settings, linger_ms=20, batch_bytes=512 * 1024):
        try:
            self._producer = KafkaProducer(
                acks="all",
                enable_idempotence=True,
                linger_ms=linger_ms,
                batch_size=batch_bytes,
                max_request_size=16 * 1024 * 1024,
                **producer_config(settings),
            )
        except kafka.errors.KafkaError as exc:
            raise StoreUnavailable(f"cannot reach Kafka: {exc}") from exc
        self._pending = []

    def send(self, topic, partition, key, value):
        self._pending.append(
            self._producer.send(topic, key=key, value=value, partition=partition)
        )

    def flush(self, timeout_s=120):
        """Wait until every record sent so far is acknowledged; StoreUnavailable if any
        was refused."""
        with _translated("flush records"):
            self._producer.flush(timeout=timeout_s)
            for future in self._pending:
                future.get(timeout=0)
        self._pending = []

    def close(self):
        self._producer.close(timeout=10)


def read_latest(settings, topic, timeout_s=300):
    """{key bytes: value bytes} of the latest non-tombstone record of every key in
    `topic`."""
    consumer = KafkaConsumer(
        enable_auto_commit=False,
        group_id=None,
        max_poll_records=5000,
        max_partition_fetch_bytes=8 * 1024 * 1024,
        **client_config(settings),
    )
    try:
        with _translated(f"read {topic}"):
            partitions = [
                TopicPartition(topic, p)
                for p in sorted(consumer.partitions_for_topic(topic))
            ]
            consumer.assign(partitions)
            consumer.seek_to_beginning(*partitions)
            ends = consumer.end_offsets(partitions)
            latest, deadline = {}, time.monotonic() + timeout_s
            while any(consumer.position(tp) < ends[tp] for tp in partitions):
                if time.monotonic() > deadline:
                    raise StoreUnavailable(
                        f"could not read {topic} to its end in {timeout_s}s"
                    )
                for records in consumer.poll(timeout_ms=500).values():
                    for record in records:
                        latest[record.key] = record.value
        return {
            key: value
            for key, value in latest.items()
            if value is not None and key is not None
        }
    finally:
        consumer.close()
