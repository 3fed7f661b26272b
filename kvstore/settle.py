"""Settling rejected records: after the log rejects a conditional record, the key's last
record is one that took no effect, and compaction (which keeps a key's last record)
would keep it. The partition's owner therefore appends a re-assert: the key's current
value (or a tombstone when it is absent), conditional on the current version, so the
log's last word on the key is one that took effect. Consumer-process side.
"""

import logging
import time

from kvstore import cache, conditions, lease, log

logger = logging.getLogger(__name__)
RETRY_EVERY = 1.0
AGAIN_AFTER = 5.0  # a re-assert not applied by then is sent again


class Settler:
    def __init__(self, settings, conn, unsettled):
        self.settings, self.conn, self.unsettled = settings, conn, unsettled
        self._producer = None
        self._last_try = 0.0
        self._sent = {}  # (namespace, partition, key) -> when its re-assert was sent

    def settle(self, ready, topics, lease_until):
        """Re-assert the unsettled keys of the partitions in `ready` ({(namespace,
        partition)}), while this member holds its lease; failures are retried later."""
        if lease_until is None or lease.now() >= lease_until:
            return
        pending = [
            (namespace, partition, key)
            for namespace, partition in sorted(ready)
            for key in self.unsettled.pending(namespace, partition)
        ]
        now = time.monotonic()
        # A re-assert settles its key once applied, as any record that takes effect
        # does; if another write beat it there, the key stays unsettled and gets
        # another one.
        pending = [
            k for k in pending if now - self._sent.get(k, -AGAIN_AFTER) >= AGAIN_AFTER
        ]
        if not pending or now - self._last_try < RETRY_EVERY:
            return
        self._last_try = now
        for namespace, partition, key in pending:
            try:
                self._reassert(topics[namespace], namespace, partition, key)
            except Exception as exc:  # Kafka down or the producer stuck: next time
                logger.warning("re-assert of %s/%s failed: %s", namespace, key, exc)
                self._close()
                return
            self._sent[(namespace, partition, key)] = now

    def _reassert(self, topic, namespace, partition, key):
        row = cache.View(self.conn).entry(namespace, key)
        if row is not None and row.partition != partition:
            row = None
        version = None if row is None else (row.partition, row.offset)
        headers = (
            conditions.BasedOn(version).header(),
            (conditions.REASSERT_HEADER, b"1"),
        )
        value = None if row is None else row.value.encode("utf-8")
        written = self._producer_().send(topic, partition, key.encode(), value, headers)
        logger.info(
            "re-asserted %s/%s after a rejected record (at %s)",
            namespace,
            key,
            written.offset,
        )

    def _producer_(self):
        if self._producer is None:
            self._producer = log.Producer(self.settings, self.settings.produce_timeout)
        return self._producer

    def _close(self):
        if self._producer is not None:
            self._producer.close(timeout=0)
            self._producer = None

    def close(self):
        self._close()


def load_unsettled(conn):
    """The keys still unsettled, as the cache recorded them (a restart keeps them)."""
    rows = conn.execute(
        "SELECT DISTINCT namespace, partition, key FROM rejected WHERE settled = 0"
    )
    return conditions.Unsettled(rows.fetchall())
