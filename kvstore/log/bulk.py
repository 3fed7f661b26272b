"""Bulk access to the log: a producer tuned for throughput, and reading a topic's latest
values."""

import dataclasses
import time

import kafka.errors
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from kvstore.errors import StoreUnavailable
from kvstore.log.common import (
    consumer_config,
    producer_config,
    translated as _translated,
)
from kvstore.partitioner import partition_of_bytes


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


@dataclasses.dataclass(frozen=True)
class LogRecord:
    """One record as the log holds it: raw key and value bytes (value None: a
    tombstone) and its headers as {name: bytes}."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict


def read_latest(settings, topic, timeout_s=300):
    """{key bytes: value bytes} of the latest non-tombstone record of every key in
    `topic`."""
    latest = {}
    records, count = _read_to_end(settings, topic, None, timeout_s)
    for record in records:
        if _placed(record, count):
            latest[record.key] = record.value
    return {
        key: value
        for key, value in latest.items()
        if value is not None and key is not None
    }


def read_all_records(settings, topic, start_offsets=None, timeout_s=300):
    """Every record of `topic` from `start_offsets` ({partition: offset}; default: the
    log start) up to the end offsets of the moment it is called, as `LogRecord`s in
    offset order within each partition, headers included."""
    return [
        LogRecord(
            record.partition,
            record.offset,
            record.key,
            record.value,
            {name: value for name, value in record.headers or ()},
        )
        for record in _read_to_end(settings, topic, start_offsets, timeout_s)[0]
    ]


def _read_to_end(settings, topic, start_offsets, timeout_s):
    """(kafka-python's records of `topic`, from `start_offsets` (or the log start) to
    the end offsets seen when called; the topic's partition count)."""
    consumer = KafkaConsumer(
        enable_auto_commit=False,
        group_id=None,
        max_poll_records=5000,
        max_partition_fetch_bytes=8 * 1024 * 1024,
        **consumer_config(settings),
    )
    try:
        with _translated(f"read {topic}"):
            partitions = [
                TopicPartition(topic, p)
                for p in sorted(consumer.partitions_for_topic(topic) or ())
            ]
            consumer.assign(partitions)
            consumer.seek_to_beginning(*partitions)
            for tp in partitions:
                if start_offsets and start_offsets.get(tp.partition):
                    consumer.seek(tp, start_offsets[tp.partition])
            ends = consumer.end_offsets(partitions)
            records, deadline = [], time.monotonic() + timeout_s
            while any(consumer.position(tp) < ends[tp] for tp in partitions):
                if time.monotonic() > deadline:
                    raise StoreUnavailable(
                        f"could not read {topic} to its end in {timeout_s}s"
                    )
                for tp, batch in consumer.poll(timeout_ms=500).items():
                    # Records appended after `ends` was taken are left for a later
                    # read: the caller asked for the log as of now.
                    records.extend(r for r in batch if r.offset < ends[tp])
        return records, len(partitions)
    finally:
        consumer.close()


def _placed(record, partitions):
    """Whether a record is on its key's partition (a misplaced one counts nowhere, as in
    the consumer's `kvstore.apply.classify`)."""
    return record.key is None or (
        partition_of_bytes(record.key, partitions) == record.partition
    )
