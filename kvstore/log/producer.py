"""The producer the web workers write with: idempotent, acks=all, one per process."""

import dataclasses

import kafka.errors
from kafka import KafkaProducer

from kvstore.errors import StoreUnavailable
from kvstore.log.common import producer_config, translated as _translated

# A record batch costs about this much beyond its key and value; a record bigger than
# the topic's max.message.bytes minus it is refused by the broker.
RECORD_OVERHEAD = 128


@dataclasses.dataclass(frozen=True)
class Written:
    """Where a record landed: its version."""

    partition: int
    offset: int


class Producer:
    """An idempotent, acks=all producer. Make one per process, after fork (gunicorn
    workers)."""

    def __init__(self, settings, timeout_s):
        self.timeout_s = timeout_s
        try:
            self._producer = KafkaProducer(
                acks="all",
                enable_idempotence=True,
                linger_ms=1,
                max_block_ms=int(timeout_s * 1000),
                request_timeout_ms=int(timeout_s * 1000),
                delivery_timeout_ms=int(timeout_s * 1000) + 1000,
                max_request_size=16 * 1024 * 1024,
                bootstrap_timeout_ms=int(timeout_s * 1000),
                **producer_config(settings),
            )
        except kafka.errors.KafkaError as exc:
            raise StoreUnavailable(f"cannot reach Kafka: {exc}") from exc

    def send(self, topic, partition, key, value):
        """Write one record (value None: a tombstone) and wait for the broker's ack;
        returns `Written`."""
        with _translated(f"write to {topic}"):
            future = self._producer.send(
                topic, key=key, value=value, partition=partition
            )
            metadata = future.get(timeout=self.timeout_s + 2)
        return Written(metadata.partition, metadata.offset)

    def close(self):
        self._producer.close(timeout=5)
