"""Plain Kafka clients for tests: write and read records the way ordinary Kafka tools
do, bypassing the store."""

import time

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka import codec as _codec


def produce(bootstrap, topic, records, partition=None, headers=None, compression=None):
    """Write (key, value) pairs; value None is a tombstone. Returns [(partition,
    offset)]. `compression`: a codec name (gzip, snappy, lz4, zstd), in batches."""
    with Writer(bootstrap, topic, compression) as writer:
        return writer.write(records, partition, headers)


class Writer:
    """A producer for one topic, connected and holding the topic's metadata before its
    first write: a test that pauses a process can write during the pause without
    spending the pause on connecting."""

    def __init__(self, bootstrap, topic, compression=None):
        # Batches of many records: a codec compresses a batch, not a record.
        batching = (
            dict(compression_type=compression, linger_ms=50) if compression else {}
        )
        self.topic = topic
        self._producer = KafkaProducer(
            bootstrap_servers=bootstrap, acks="all", **batching
        )
        try:
            self._producer.partitions_for(topic)
        except BaseException:
            self._producer.close()
            raise

    def write(self, records, partition=None, headers=None):
        """Write (key, value) pairs, as `produce`."""
        futures = [
            self._producer.send(
                self.topic,
                key=_bytes(key),
                value=_bytes(value),
                partition=partition,
                headers=headers,
            )
            for key, value in records
        ]
        self._producer.flush()
        return [
            (meta.partition, meta.offset)
            for meta in (f.get(timeout=30) for f in futures)
        ]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._producer.close()


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


def log_size(bootstrap, topic):
    """Bytes the topic's partitions take in the brokers' log directories (all
    replicas)."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        brokers = admin.describe_log_dirs([topic])
    finally:
        admin.close()
    return sum(
        partition["partition_size"]
        for broker in brokers
        for log_dir in broker["log_dirs"]
        for described in log_dir["topics"]
        if described["name"] == topic
        for partition in described["partitions"]
    )


def codecs():
    """{codec: whether kafka-python can read and write it here}."""
    return {
        "gzip": _codec.has_gzip(),
        "snappy": _codec.has_snappy(),
        "lz4": _codec.has_lz4(),
        "zstd": _codec.has_zstd(),
    }


def _bytes(value):
    if value is None or isinstance(value, bytes):
        return value
    return str(value).encode()
