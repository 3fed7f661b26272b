"""Plain Kafka clients for tests: write and read records the way ordinary Kafka tools
do, bypassing the store."""

import time

from kafka import KafkaConsumer, KafkaProducer, TopicPartition


def produce(bootstrap, topic, records, partition=None, headers=None):
    """Write (key, value) pairs; value None is a tombstone. Returns [(partition,
    offset)]."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        futures = [
            producer.send(
                topic,
                key=_bytes(key),
                value=_bytes(value),
                partition=partition,
                headers=headers,
            )
            for key, value in records
        ]
        producer.flush()
        return [
            (meta.partition, meta.offset)
            for meta in (f.get(timeout=30) for f in futures)
        ]
    finally:
        producer.close()


def read_all(bootstrap, topic, timeout=30, headers=False):
    """Every record now in the topic, as (partition, offset, key, value) with raw bytes
    (None kept), and its headers as a fifth item when asked."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None
    )
    try:
        partitions = [
            TopicPartition(topic, p)
            for p in sorted(consumer.partitions_for_topic(topic))
        ]
        consumer.assign(partitions)
        consumer.seek_to_beginning()
        ends = consumer.end_offsets(partitions)
        records, deadline = [], time.monotonic() + timeout
        while any(consumer.position(tp) < ends[tp] for tp in partitions):
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read {topic} to its end in {timeout}s")
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(
                    (r.partition, r.offset, r.key, r.value)
                    + ((dict(r.headers or ()),) if headers else ())
                    for r in batch
                )
        return records
    finally:
        consumer.close()


def _bytes(value):
    if value is None or isinstance(value, bytes):
        return value
    return str(value).encode()
