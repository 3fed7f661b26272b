"""The consumer's writes to the cache. `apply_batch` is the core: records of several
partitions in, rows and positions out, in one SQLite transaction, so a crash can never
leave rows and positions apart.
"""

import json
import json.scanner
import logging
import time

from kvstore.cache import READY, RESTORING, REVOKED

logger = logging.getLogger(__name__)


# json's C scanner, called directly: the restore validates every value, and json.loads'
# Python layers cost more than the scan itself.
_scan = json.scanner.make_scanner(json.JSONDecoder())
_JSON_SPACE = " \t\n\r"


def is_json(text):
    """Whether `text` is one JSON value (as json.loads takes it), at C speed."""
    start = len(text) - len(text.lstrip(_JSON_SPACE))
    try:
        _, end = _scan(text, start)
    except (StopIteration, ValueError):
        return False
    return not text[end:].strip(_JSON_SPACE)


def decode(record):
    """(key str, value JSON text or None for a tombstone), or None when the record
    cannot be used."""
    if record.key is None:
        return None
    try:
        key = record.key.decode("utf-8")
        if record.value is None:
            return key, None
        value = record.value.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return (key, value) if is_json(value) else None


def apply_batch(conn, batch, now=None):
    """Apply `{(namespace, partition): (records, next_position)}` in one transaction.

    Records are in offset order; the last record of a key wins; a tombstone deletes the
    row; a record that cannot be decoded is logged, counted in `skipped` and passed
    over. Returns the records applied.
    """
    now = time.time() if now is None else now
    applied = 0
    conn.execute("BEGIN IMMEDIATE")
    try:
        for (namespace, partition), (records, next_position) in batch.items():
            latest, skipped = {}, 0
            for record in records:
                decoded = decode(record)
                if decoded is None:
                    skipped += 1
                    logger.warning(
                        "skipped undecodable record %s/%s@%s",
                        namespace,
                        partition,
                        record.offset,
                    )
                    continue
                latest[decoded[0]] = (record.offset, decoded[1])
            conn.executemany(
                "INSERT OR REPLACE INTO entries (namespace, key, partition, offset, "
                "value) VALUES (?, ?, ?, ?, ?)",
                [
                    (namespace, key, partition, offset, value)
                    for key, (offset, value) in latest.items()
                    if value is not None
                ],
            )
            conn.executemany(
                "DELETE FROM entries WHERE namespace = ? AND key = ?",
                [
                    (namespace, key)
                    for key, (_, value) in latest.items()
                    if value is None
                ],
            )
            conn.execute(
                "UPDATE partitions SET position = max(position, ?), applied_at = ?, "
                "skipped = skipped + ? "
                "WHERE namespace = ? AND partition = ?",
                (next_position, now, skipped, namespace, partition),
            )
            applied += len(records)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return applied


class Writer:
    """Partition states, topic facts and the heartbeat, as the consumer process records
    them."""

    def __init__(self, conn):
        self.conn = conn

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
        delete_retention_ms)]."""
        self._transaction(
            [
                ("INSERT OR REPLACE INTO topics VALUES (?, ?, ?, ?, ?)", fact)
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
        return state

    def mark_ready(self, namespace, partition):
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

    def revoke_all(self):
        """Serve nothing and forget the group's view (the start and the end of a
        consumer run)."""
        self._transaction(
            [
                ("UPDATE partitions SET state = ?", (REVOKED,)),
                ("DELETE FROM group_view", ()),
            ]
        )

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

    def heartbeat(self, url, pid, applied, started_at, alive=True):
        self._transaction(
            [
                (
                    "INSERT OR REPLACE INTO member (id, pid, url, heartbeat, "
                    "started_at, applied) VALUES (1, ?, ?, ?, ?, ?)",
                    (pid, url, time.time() if alive else 0.0, started_at, applied),
                )
            ]
        )
