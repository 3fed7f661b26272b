"""The read cache: one SQLite file per instance (WAL), written only by the consumer
process and read by the web workers. It holds the entries of the partitions this
instance owns, each partition's position and state, the topics' facts, and the
consumer's heartbeat.

Rows leave this module as the named types below, never as bare tuples."""

import json
import sqlite3
import threading
from typing import NamedTuple

from kvstore.ownership import GroupView

SCHEMA_VERSION = 8
RESTORING, READY, REVOKED = "restoring", "ready", "revoked"

SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    partition INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (namespace, key)
) WITHOUT ROWID;
-- position: the next offset to apply (every record below it is in `entries`).
-- skipped: records passed over because their key or value cannot be used; misplaced:
-- records of a key whose partition (murmur2) is another one, passed over too.
-- synced_at: when the log was last known to hold nothing past `position` that this
-- cache missed.
CREATE TABLE IF NOT EXISTS partitions (
    namespace TEXT NOT NULL,
    partition INTEGER NOT NULL,
    position INTEGER NOT NULL,
    target INTEGER NOT NULL,
    state TEXT NOT NULL,
    synced_at REAL NOT NULL,
    applied_at REAL,
    end_offset INTEGER,
    ready_at REAL,
    skipped INTEGER NOT NULL DEFAULT 0,
    misplaced INTEGER NOT NULL DEFAULT 0,
    -- every record from this offset on that took no effect is in `rejected` (older
    -- rejections were pruned): which records took effect is known from here on
    decided_from INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (namespace, partition)
);
CREATE TABLE IF NOT EXISTS topics (
    namespace TEXT PRIMARY KEY,
    topic TEXT NOT NULL,
    partitions INTEGER NOT NULL,
    max_message_bytes INTEGER NOT NULL,
    delete_retention_ms INTEGER NOT NULL,
    compaction_lag_ms INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS member (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    pid INTEGER NOT NULL,
    url TEXT NOT NULL,
    heartbeat REAL NOT NULL,
    started_at REAL NOT NULL,
    applied INTEGER NOT NULL DEFAULT 0,
    rebalances INTEGER NOT NULL DEFAULT 0,  -- assignments received since started_at
    -- the membership lease's end on kvstore.lease's clock; NULL: no lease
    lease_until REAL,
    last_error TEXT,
    -- when a draining stop began (NULL: not stopping); heartbeat 0 once it ended
    draining_since REAL
);
-- Records that took no effect: conditional ones the log rejected (their condition no
-- longer held where they landed) and repeats of an idempotent write, with the version
-- that was current there: a writer waiting for its record answers from this, and a
-- watch leaves them out. Kept for a while, then pruned (partitions.decided_from).
CREATE TABLE IF NOT EXISTS rejected (
    namespace TEXT NOT NULL,
    partition INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    key TEXT NOT NULL,
    current TEXT,
    at REAL NOT NULL,
    settled INTEGER NOT NULL DEFAULT 0,  -- a later record of the key took effect
    PRIMARY KEY (namespace, partition, offset)
);
-- The first answer to each idempotent write (kvstore.idempotency), by namespace, key
-- and the client's scoped Idempotency-Key, as its record decided it: kept for the
-- idempotency window (by record time), so a retry gets it back instead of writing.
CREATE TABLE IF NOT EXISTS idempotency (
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    scope TEXT NOT NULL,
    partition INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    request TEXT NOT NULL,
    outcome TEXT NOT NULL,
    value TEXT,
    current TEXT,
    at REAL NOT NULL,
    PRIMARY KEY (namespace, key, scope)
) WITHOUT ROWID;
-- The group as the last assignment described it: owners[p] is the base URL owning
-- index p, or null.
CREATE TABLE IF NOT EXISTS group_view (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    generation INTEGER NOT NULL,
    owners TEXT NOT NULL,
    members TEXT NOT NULL
);
"""
TABLES = (
    "entries",
    "partitions",
    "topics",
    "member",
    "group_view",
    "rejected",
    "idempotency",
)


class Member(NamedTuple):
    """This instance's consumer process, as its heartbeat last recorded it."""

    url: str
    heartbeat: float  # time.time() of the last heartbeat; 0 once it stopped cleanly
    pid: int
    lease_until: float | None  # see kvstore.lease
    last_error: str | None  # why it stopped, when it stopped on an error
    applied: int  # records applied since it started
    rebalances: int  # assignments (rebalances) received since it started
    draining_since: float | None  # a draining stop under way, since then


class TopicFacts(NamedTuple):
    topic: str
    partitions: int
    max_message_bytes: int


class Held(NamedTuple):
    """A partition as this instance holds it: its state, the next offset to apply, and
    the end offset its restore runs to."""

    state: str
    position: int
    target: int


class PartitionRow(NamedTuple):
    namespace: str
    partition: int
    state: str
    position: int
    target: int
    applied_at: float | None
    skipped: int
    end_offset: int | None
    misplaced: int


class Stored(NamedTuple):
    """One key's row: the record that wrote it (partition, offset) and its JSON text."""

    partition: int
    offset: int
    value: str


class EntryRow(NamedTuple):
    key: str
    partition: int
    offset: int
    value: str


class Position(NamedTuple):
    state: str
    position: int


class Answered(NamedTuple):
    """The first answer to an idempotent write, as its record decided it: "rejected"
    when the log rejected it (`current`: the version there), else what it did
    ("created", "replaced", "deleted") with the value written (None for a delete)."""

    partition: int
    offset: int
    request: str  # the request's fingerprint
    outcome: str
    value: str | None
    current: str | None
    at: float  # the record's timestamp, ms


def connect(path, readonly=False):
    """A connection in autocommit mode (transactions are explicit), WAL, with a busy
    timeout."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(
        str(path), isolation_level=None, check_same_thread=False, timeout=10
    )
    conn.execute("PRAGMA busy_timeout = 10000")
    if readonly:
        conn.execute("PRAGMA query_only = 1")
        return conn
    conn.execute("PRAGMA journal_mode = WAL")
    # NORMAL in WAL mode: a power loss may lose the last transactions, never tear one;
    # what is lost is re-read from Kafka, because the position is lost with the rows it
    # covers.
    conn.execute("PRAGMA synchronous = NORMAL")
    _migrate(conn)
    return conn


def _migrate(conn):
    """Create the schema; a cache of another schema version is dropped (Kafka has
    everything in it)."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version not in (0, SCHEMA_VERSION):
        for table in TABLES:
            conn.execute(f"DROP TABLE IF EXISTS {table}")
    conn.executescript(SCHEMA)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


class Reader:
    """The web side's view of the cache: one connection per thread, opened lazily."""

    def __init__(self, path):
        self.path = path
        self._local = threading.local()

    def connection(self):
        """This thread's connection, or None while the cache file does not exist."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if not self.path.exists():
                return None
            conn = self._local.conn = connect(self.path, readonly=True)
        return conn

    def snapshot(self):
        """A context manager for one consistent read transaction; yields None when there
        is no cache yet."""
        return _Snapshot(self.connection())


class _Snapshot:
    def __init__(self, conn):
        self.conn = conn

    def __enter__(self):
        if self.conn is None:
            return None
        self.conn.execute("BEGIN")
        return View(self.conn)

    def __exit__(self, *exc):
        if self.conn is not None:
            self.conn.execute("COMMIT")


class View:
    """Queries inside one read transaction."""

    def __init__(self, conn):
        self.conn = conn

    def _one(self, kind, sql, params=()):
        row = self.conn.execute(sql, params).fetchone()
        return None if row is None else kind._make(row)

    def member(self):
        """This instance's consumer process, or None if it never ran."""
        try:
            return self._one(
                Member,
                "SELECT url, heartbeat, pid, lease_until, last_error, applied, "
                "rebalances, draining_since FROM member WHERE id = 1",
            )
        except sqlite3.OperationalError:  # the consumer has not created the schema yet
            return None

    def topic(self, namespace):
        """The TopicFacts of a namespace, or None."""
        return self._one(
            TopicFacts,
            "SELECT topic, partitions, max_message_bytes FROM topics WHERE namespace = "
            "?",
            (namespace,),
        )

    def partition(self, namespace, partition):
        """How this instance holds a partition (Held), or None when it never held it."""
        return self._one(
            Held,
            "SELECT state, position, target FROM partitions "
            "WHERE namespace = ? AND partition = ?",
            (namespace, partition),
        )

    def group(self):
        """The GroupView of the last assignment, or None before the first."""
        row = self.conn.execute(
            "SELECT generation, owners, members FROM group_view WHERE id = 1"
        ).fetchone()
        if row is None:
            return None
        return GroupView(row[0], tuple(json.loads(row[1])), tuple(json.loads(row[2])))

    def topics(self):
        """{namespace: TopicFacts}."""
        rows = self.conn.execute(
            "SELECT namespace, topic, partitions, max_message_bytes FROM topics"
        )
        return {namespace: TopicFacts(*facts) for namespace, *facts in rows}

    def ready_at(self, namespace, partition):
        """When this instance last started serving the partition (None: it does not)."""
        row = self.conn.execute(
            "SELECT ready_at FROM partitions "
            "WHERE namespace = ? AND partition = ? AND state = ?",
            (namespace, partition, READY),
        ).fetchone()
        return row[0] if row else None

    def partitions(self, namespace=None):
        """Every partition this cache knows, as PartitionRows."""
        sql = (
            "SELECT namespace, partition, state, position, target, applied_at, "
            "skipped, end_offset, misplaced FROM partitions"
        )
        if namespace is None:
            rows = self.conn.execute(sql + " ORDER BY namespace, partition")
        else:
            rows = self.conn.execute(
                sql + " WHERE namespace = ? ORDER BY partition", (namespace,)
            )
        return [PartitionRow._make(row) for row in rows]

    def entry(self, namespace, key):
        """The Stored row of a key, or None."""
        return self._one(
            Stored,
            "SELECT partition, offset, value FROM entries WHERE namespace = ? AND key "
            "= ?",
            (namespace, key),
        )

    def rejection(self, namespace, partition, offset):
        """None when the record at `offset` took effect (or was never judged);
        otherwise ("rejected", the version current where it landed, or None)."""
        row = self.conn.execute(
            "SELECT current FROM rejected "
            "WHERE namespace = ? AND partition = ? AND offset = ?",
            (namespace, partition, offset),
        ).fetchone()
        return None if row is None else ("rejected", row[0])

    def entries(self, namespace, partitions, after, limit, prefix=""):
        """Up to `limit` EntryRows of the given partitions, keys after `after` (and
        starting with `prefix`), in key order."""
        marks = ",".join("?" * len(partitions))
        sql = (
            "SELECT key, partition, offset, value FROM entries "
            f"WHERE namespace = ? AND key > ? AND partition IN ({marks}) "
        )
        params = [namespace, after, *partitions]
        if prefix:
            # A range on the primary key, so SQLite seeks instead of scanning.
            sql += "AND key >= ? "
            params.append(prefix)
            upper = prefix_end(prefix)
            if upper is not None:
                sql += "AND key < ? "
                params.append(upper)
        rows = self.conn.execute(sql + "ORDER BY key LIMIT ?", (*params, limit))
        return [EntryRow._make(row) for row in rows]

    def compaction_lag_ms(self, namespace):
        """The topic's min.compaction.lag.ms as the consumer recorded it (0: none)."""
        row = self.conn.execute(
            "SELECT compaction_lag_ms FROM topics WHERE namespace = ?", (namespace,)
        ).fetchone()
        return row[0] if row else 0

    def idempotent(self, namespace, key, scope):
        """The Answered of an idempotent write to `key`, or None."""
        return self._one(
            Answered,
            "SELECT partition, offset, request, outcome, value, current, at "
            "FROM idempotency WHERE namespace = ? AND key = ? AND scope = ?",
            (namespace, key, scope),
        )

    def no_effect(self, namespace, partition, start, end):
        """(offsets in [start, end) whose records took no effect, the partition's
        decided_from: below it, that is no longer known)."""
        offsets = self.conn.execute(
            "SELECT offset FROM rejected WHERE namespace = ? AND partition = ? "
            "AND offset >= ? AND offset < ?",
            (namespace, partition, start, end),
        )
        decided = self.conn.execute(
            "SELECT decided_from FROM partitions WHERE namespace = ? "
            "AND partition = ?",
            (namespace, partition),
        ).fetchone()
        return {row[0] for row in offsets}, decided[0] if decided else 0


def prefix_end(prefix):
    """The least string above every string that starts with `prefix` (None: no such
    bound), in the code point order SQLite's BINARY collation of UTF-8 keeps."""
    while prefix:
        last = ord(prefix[-1]) + 1
        if 0xD800 <= last <= 0xDFFF:  # surrogates are no characters of a key
            last = 0xE000
        if last <= 0x10FFFF:
            return prefix[:-1] + chr(last)
        prefix = prefix[:-1]
    return None


def position(conn, namespace, partition):
    """The Position of one partition: the cheap question a waiting writer asks again and
    again."""
    row = conn.execute(
        "SELECT state, position FROM partitions WHERE namespace = ? AND partition = ?",
        (namespace, partition),
    ).fetchone()
    return None if row is None else Position._make(row)
