"""The consumer's writes to the cache. `apply_batch` is the core: records of several
partitions in, rows and positions out, in one SQLite transaction, so a crash can never
leave rows and positions apart. No record's content can stop it: what cannot be used is
counted and passed over.
"""

import json
import logging
import time

from kvstore import conditions, idempotency
from kvstore.cache import READY, RESTORING, REVOKED
from kvstore.partitioner import partition_of_bytes
from kvstore.values import is_json

logger = logging.getLogger(__name__)

# What a record does to its key: set or delete the row, nothing (misplaced: the key
# lives on another partition), or delete the row because the value cannot be used.
SET, DELETE, MISPLACED, UNUSABLE = "set", "delete", "misplaced", "unusable"


def classify(record, partition, partitions):
    """(what the record does, its key or None, its value text or None).

    A record counts only on its key's own partition (murmur2, as the store's producer
    and Kafka's Java client place it): one another partitioner put elsewhere is
    MISPLACED and changes nothing, whatever it holds. A record whose value cannot be
    used is UNUSABLE: its key is left without a value, as compaction, which keeps only
    the last record of a key, would leave it on every instance sooner or later.
    """
    if record.key is None:
        return UNUSABLE, None, None
    if partitions and partition_of_bytes(record.key, partitions) != partition:
        return MISPLACED, None, None
    try:
        key = record.key.decode("utf-8")
    except UnicodeDecodeError:
        return UNUSABLE, None, None
    if record.value is None:
        return DELETE, key, None
    try:
        value = record.value.decode("utf-8")
    except UnicodeDecodeError:
        return UNUSABLE, key, None
    return (SET, key, value) if is_json(value) else (UNUSABLE, key, None)


def apply_batch(
    conn,
    batch,
    now=None,
    window_ms=None,
    unsettled=None,
    partitions=None,
    idempotency_ms=None,
):
    """Apply `{(namespace, partition): (records, next_position)}` in one transaction.

    Records are in offset order. A record takes effect unless it carries a condition
    (kvstore.conditions) that no longer holds where it landed, or repeats an idempotent
    write of its key within `idempotency_ms` (kvstore.idempotency), whose first answer
    is recorded; then the last record of
    a key that took effect wins; a tombstone deletes the row; a record that cannot be
    used is logged, counted in `skipped` and its key left without a value; a record of
    another partition's key is counted in `misplaced` and changes nothing (see
    `classify`). Rejections are recorded for the writers, and their keys kept in
    `unsettled` (a conditions.Unsettled) until a later record of theirs takes effect.
    `partitions` ({namespace: partition count}) defaults to the topics the consumer
    recorded. Returns the records applied.
    """
    rules = _Rules(now, window_ms, unsettled, idempotency_ms)
    applied = 0
    conn.execute("BEGIN IMMEDIATE")
    try:
        sizes = _sizes(conn) if partitions is None else partitions
        for (namespace, partition), (records, next_position) in batch.items():
            judge = _Judge(conn, namespace, partition, rules)
            for record in records:
                judge.take(record, sizes.get(namespace))
            judge.write(next_position)
            applied += len(records)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return applied


def _sizes(conn):
    return dict(conn.execute("SELECT namespace, partitions FROM topics"))


class _Rules:
    """What every partition of a batch is judged by."""

    def __init__(self, now, window_ms, unsettled, idempotency_ms):
        self.now = time.time() if now is None else now
        self.window_ms = window_ms
        self.unsettled = conditions.Unsettled() if unsettled is None else unsettled
        self.idempotency_ms = idempotency_ms


class _Judge:
    """One partition's records of one batch: which take effect, and what they leave."""

    def __init__(self, conn, namespace, partition, rules):
        self.conn, self.namespace, self.partition = conn, namespace, partition
        self.now, self.window_ms = rules.now, rules.window_ms
        self.unsettled = rules.unsettled
        self.answers = idempotency.Ledger(
            conn, namespace, partition, rules.idempotency_ms
        )
        self.latest = {}  # key -> (offset, value JSON text or None)
        self.rejected = []  # (offset, key, current version text)
        self.settled = set()
        self.counts, self.first = {UNUSABLE: 0, MISPLACED: 0}, None

    def take(self, record, partitions):
        kind, key, value = classify(record, self.partition, partitions)
        if kind in self.counts:
            self.counts[kind] += 1
            self.first = record.offset if self.first is None else self.first
        if key is None:
            return
        headers = getattr(record, "headers", None)
        idem = idempotency.of(headers) if kind != UNUSABLE else None
        if idem is not None and self.answers.repeats(key, idem, record.timestamp):
            self._no_effect(record, key, self._current(key))
            return
        condition = conditions.based_on(headers)
        if (
            kind != UNUSABLE
            and condition is not None
            and conditions.judged(record, self.now * 1000, self.window_ms)
        ):
            current = self._current(key)
            if not condition.holds(current):
                self._no_effect(record, key, current)
                if idem is not None:
                    at = conditions.etag_text(current) or ""
                    self.answers.answer(key, idem, record, rejected_at=at)
                return
        self.latest[key] = (record.offset, value)
        if idem is not None:
            self.answers.answer(key, idem, record, value=value)
        if (self.namespace, self.partition, key) in self.unsettled:
            self.unsettled.settle(self.namespace, self.partition, key)
            self.settled.add(key)

    def _no_effect(self, record, key, current):
        """The record takes no effect: recorded for its writer and for watches, and
        its key unsettled (the log's last word on it is this record for now)."""
        self.rejected.append((record.offset, key, conditions.etag_text(current)))
        self.unsettled.add(self.namespace, self.partition, key)

    def _current(self, key):
        """The key's version here: (partition, offset) or None when absent."""
        if key in self.latest:
            offset, value = self.latest[key]
            return None if value is None else (self.partition, offset)
        row = self.conn.execute(
            "SELECT partition, offset FROM entries WHERE namespace = ? AND key = ?",
            (self.namespace, key),
        ).fetchone()
        return None if row is None else tuple(row)

    def write(self, next_position):
        ns, partition, latest = self.namespace, self.partition, self.latest
        self.answers.write()
        if self.first is not None:
            # One line per batch: a topic written by another partitioner may hold
            # millions.
            logger.warning(
                "%s/%s: skipped %s unusable and %s misplaced records (the first at %s)",
                ns,
                partition,
                self.counts[UNUSABLE],
                self.counts[MISPLACED],
                self.first,
            )
        self.conn.executemany(
            "INSERT OR REPLACE INTO entries (namespace, key, partition, offset, "
            "value) VALUES (?, ?, ?, ?, ?)",
            [
                (ns, key, partition, offset, value)
                for key, (offset, value) in latest.items()
                if value is not None
            ],
        )
        self.conn.executemany(
            "DELETE FROM entries WHERE namespace = ? AND key = ?",
            [(ns, key) for key, (_, value) in latest.items() if value is None],
        )
        self.conn.executemany(
            "UPDATE rejected SET settled = 1 WHERE namespace = ? AND partition = ? "
            "AND key = ?",
            [(ns, partition, key) for key in self.settled],
        )
        self.conn.executemany(
            "INSERT OR REPLACE INTO rejected (namespace, partition, offset, key, "
            "current, at, settled) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    ns,
                    partition,
                    offset,
                    key,
                    current,
                    self.now,
                    self._later(key, offset),
                )
                for offset, key, current in self.rejected
            ],
        )
        self.conn.execute(
            "UPDATE partitions SET position = max(position, ?), applied_at = ?, "
            "skipped = skipped + ?, misplaced = misplaced + ? "
            "WHERE namespace = ? AND partition = ?",
            (
                next_position,
                self.now,
                self.counts[UNUSABLE],
                self.counts[MISPLACED],
                ns,
                partition,
            ),
        )

    def _later(self, key, offset):
        """Whether a record of `key` after `offset` took effect in this batch."""
        return key in self.latest and self.latest[key][0] > offset


class Writer:
    """Partition states, topic facts and the heartbeat, as the consumer process records
    them."""

    def __init__(self, conn):
        self.conn = conn
        # A partition changed state since the consumer last rang (kvstore.wake).
        self.moved = False

    def _transaction(self, statements):
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            for sql, params in statements:
                self.conn.execute(sql, params)
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise

    def set_topics(self, facts):
        """`facts`: [(namespace, topic, partitions, max_message_bytes,
        delete_retention_ms[, compaction_lag_ms])]."""
        self._transaction(
            [
                (
                    "INSERT OR REPLACE INTO topics (namespace, topic, partitions, "
                    "max_message_bytes, delete_retention_ms, compaction_lag_ms) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (*fact, 0)[:6],
                )
                for fact in facts
            ]
        )

    def checkpoint(self, namespace, partition):
        """(position, synced_at) recorded for a partition, or None."""
        return self.conn.execute(
            "SELECT position, synced_at FROM partitions WHERE namespace = ? AND "
            "partition = ?",
            (namespace, partition),
        ).fetchone()

    def start_restore(self, namespace, partition, position, target, wipe):
        """Take a partition into this instance: restoring from `position` to `target`
        (ready if already there).

        With `wipe`, its rows are deleted first and the restore starts from scratch."""
        state = READY if position >= target else RESTORING
        statements = []
        if wipe:
            statements.append(
                (
                    "DELETE FROM entries WHERE namespace = ? AND partition = ?",
                    (namespace, partition),
                )
            )
        synced = "excluded.synced_at" if wipe else "partitions.synced_at"
        now = time.time()
        statements.append(
            (
                "INSERT INTO partitions (namespace, partition, position, target, "
                "state, synced_at, ready_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (namespace, partition) DO "
                "UPDATE SET position = excluded.position, "
                "target = excluded.target, state = excluded.state, synced_at = "
                f"{synced}, ready_at = excluded.ready_at",
                (
                    namespace,
                    partition,
                    position,
                    target,
                    state,
                    now,
                    now if state == READY else None,
                ),
            )
        )
        self._transaction(statements)
        self.moved = True
        return state

    def mark_ready(self, namespace, partition):
        self.moved = True
        self._transaction(
            [
                (
                    "UPDATE partitions SET state = ?, ready_at = ? WHERE namespace = ? "
                    "AND partition = ?",
                    (READY, time.time(), namespace, partition),
                )
            ]
        )

    def revoke(self, keys):
        """Stop serving these (namespace, partition); their rows and positions stay for
        a later return."""
        self.moved = True
        self._transaction(
            [
                (
                    "UPDATE partitions SET state = ? WHERE namespace = ? AND partition "
                    "= ?",
                    (REVOKED, ns, p),
                )
                for ns, p in keys
            ]
        )

    def revoke_all(self, keep_view=False):
        """Serve nothing and (unless `keep_view`: a draining stop still redirects)
        forget the group's view: the start and the end of a consumer run."""
        statements = [("UPDATE partitions SET state = ?", (REVOKED,))]
        if not keep_view:
            statements.append(("DELETE FROM group_view", ()))
        self.moved = True
        self._transaction(statements)

    def synced(self, keys, now=None):
        """These partitions are known to be at the log's end right now."""
        now = time.time() if now is None else now
        self._transaction(
            [
                (
                    "UPDATE partitions SET synced_at = ? WHERE namespace = ? AND "
                    "partition = ?",
                    (now, ns, p),
                )
                for ns, p in keys
            ]
        )

    def set_group(self, view):
        self._transaction(
            [
                (
                    "INSERT OR REPLACE INTO group_view (id, generation, owners, "
                    "members) VALUES (1, ?, ?, ?)",
                    (
                        view.generation,
                        json.dumps(list(view.owners)),
                        json.dumps(list(view.members)),
                    ),
                )
            ]
        )

    def end_offsets(self, ends):
        """Record the end offsets last seen: {(namespace, partition): end offset}."""
        self._transaction(
            [
                (
                    "UPDATE partitions SET end_offset = ? WHERE namespace = ? AND "
                    "partition = ?",
                    (end, ns, p),
                )
                for (ns, p), end in ends.items()
            ]
        )

    def heartbeat(self, url, pid, started_at, counts, alive=True, lease_until=None):
        """Record that the consumer process lives; `counts`: (records applied,
        rebalances) since it started."""
        self._transaction(
            [
                (
                    "INSERT OR REPLACE INTO member (id, pid, url, heartbeat, "
                    "started_at, applied, rebalances, lease_until) "
                    "VALUES (1, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        pid,
                        url,
                        time.time() if alive else 0.0,
                        started_at,
                        *counts,
                        lease_until if alive else None,
                    ),
                )
            ]
        )

    def draining(self):
        """A draining stop begins: the web side keeps answering until it ends."""
        self._transaction(
            [("UPDATE member SET draining_since = ? WHERE id = 1", (time.time(),))]
        )

    def lease(self, lease_until):
        """Record the membership lease's end (None: no lease)."""
        self._transaction(
            [("UPDATE member SET lease_until = ? WHERE id = 1", (lease_until,))]
        )

    def prune_rejections(self, older_than):
        """Forget settled rejections older than `older_than` (time.time()); what took
        effect is then known only above the highest offset forgotten
        (`decided_from`)."""
        self._transaction(
            [
                (
                    "UPDATE partitions SET decided_from = max(decided_from, ("
                    "SELECT max(r.offset) + 1 FROM rejected r "
                    "WHERE r.namespace = partitions.namespace "
                    "AND r.partition = partitions.partition "
                    "AND r.settled = 1 AND r.at < ?)) "
                    "WHERE EXISTS (SELECT 1 FROM rejected r "
                    "WHERE r.namespace = partitions.namespace "
                    "AND r.partition = partitions.partition "
                    "AND r.settled = 1 AND r.at < ?)",
                    (older_than, older_than),
                ),
                (
                    "DELETE FROM rejected WHERE settled = 1 AND at < ?",
                    (older_than,),
                ),
            ]
        )

    def prune_answers(self, older_than_ms):
        """Forget the first answers of idempotent writes recorded before
        `older_than_ms` (record time): past the window, a retry is a new write."""
        self._transaction([("DELETE FROM idempotency WHERE at < ?", (older_than_ms,))])


def record_failure(conn, url, pid, started_at, message):
    """The consumer process stops on an error: record why, for /readyz, the 503 bodies
    and kvstore_status (its next heartbeat clears it)."""
    conn.execute(
        "INSERT INTO member (id, pid, url, heartbeat, started_at, last_error) "
        "VALUES (1, ?, ?, 0, ?, ?) ON CONFLICT (id) DO UPDATE SET pid = excluded.pid, "
        "url = excluded.url, heartbeat = 0, last_error = excluded.last_error",
        (pid, url, started_at, message),
    )
