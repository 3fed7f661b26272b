"""The producer the web workers write with: idempotent, acks=all, one per process.

A write's outcome is one of three: acknowledged (where it landed), certainly not
written (refused before the record left this process, or refused for good by the
broker), or unknown (the record was handed to the client and then the answer did not
come: it may still be appended later). Only the first two are ever reported as known.
"""

import dataclasses
import logging

import kafka.errors
from kafka import KafkaProducer

from kvstore.errors import StoreUnavailable, WriteOutcomeUnknown
from kvstore.log.common import producer_config

logger = logging.getLogger(__name__)

# A record batch costs about this much beyond its key and value; a record bigger than
# the topic's max.message.bytes minus it is refused by the broker.
RECORD_OVERHEAD = 128

# How long a close waits for an abandoned client's I/O thread to stop (it stops at its
# next turn, woken at once).
ABANDON_WAIT = 1.0

# Errors with which a broker refuses a record for good: no attempt of it was appended
# (retries of an idempotent producer that were appended answer as duplicates).
REFUSED = (
    kafka.errors.MessageSizeTooLargeError,
    kafka.errors.RecordListTooLargeError,
    kafka.errors.InvalidRecordError,
    kafka.errors.TopicAuthorizationFailedError,
    kafka.errors.ClusterAuthorizationFailedError,
)


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
                linger_ms=0,
                max_block_ms=int(timeout_s * 1000),
                request_timeout_ms=int(timeout_s * 1000),
                delivery_timeout_ms=int(timeout_s * 1000) + 1000,
                max_request_size=16 * 1024 * 1024,
                bootstrap_timeout_ms=int(timeout_s * 1000),
                **producer_config(settings),
            )
        except kafka.errors.KafkaError as exc:
            raise StoreUnavailable(f"cannot reach Kafka: {exc}") from exc

    def send(self, topic, partition, key, value, headers=()):
        """Write one record (value None: a tombstone) and wait for the broker's ack;
        returns `Written`. StoreUnavailable: certainly not written;
        WriteOutcomeUnknown: it may be appended, now or later."""
        try:
            future = self._producer.send(
                topic, key=key, value=value, partition=partition, headers=list(headers)
            )
        except (kafka.errors.KafkaError, BufferError) as exc:
            # Nothing left this process: no metadata in time, or the buffer is full.
            raise StoreUnavailable(f"Kafka failed to take a write: {exc}") from exc
        try:
            metadata = future.get(timeout=self.timeout_s + 2)
        except REFUSED as exc:
            raise StoreUnavailable(f"Kafka refused the write: {exc}") from exc
        except kafka.errors.KafkaError as exc:
            raise WriteOutcomeUnknown(
                f"Kafka did not confirm the write to {topic} in time ({exc}); it may "
                "still be appended."
            ) from exc
        return Written(metadata.partition, metadata.offset)

    def stuck(self):
        """Whether the client can no longer send: kafka-python 3.0 drops an idempotent
        producer's id after a delivery timeout and, outside transactions, never asks
        for a new one, so every later batch waits forever."""
        manager = getattr(self._producer, "_transaction_manager", None)
        pid = getattr(manager, "producer_id_and_epoch", None)
        return pid is not None and not pid.is_valid

    def close(self, timeout=5):
        """Close the client, first waiting up to `timeout` s for the records still
        under way. A record it cannot deliver by then (a stuck producer's; any, with
        Kafka gone) is abandoned: its writer's wait ends in WriteOutcomeUnknown, since
        an attempt may have reached the broker."""
        try:
            self._producer.close(timeout=timeout)
            return
        except kafka.errors.KafkaTimeoutError:
            pass  # records left: see below
        except kafka.errors.KafkaError as exc:
            logger.warning("closing a producer: %s", exc)
            return
        # kafka-python flushes before it closes, and when the flush times out it gives
        # up the close with its I/O thread still running, for good (a stuck producer's
        # records are never sent). Stop that thread without sending: it fails the
        # records it holds (IllegalStateError); then the close completes.
        sender = getattr(self._producer, "_sender", None)
        if sender is not None:
            sender.force_close()
            sender.join(ABANDON_WAIT)
        try:
            self._producer.close(timeout=0)
        except kafka.errors.KafkaError as exc:
            logger.warning("closing a producer: %s", exc)
