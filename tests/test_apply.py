"""The consumer's pure core: applying batches of records to the cache, one transaction
per batch."""

import collections
import sqlite3
import time

import pytest

from kvstore import apply, cache, conf
from kvstore.consumer import ConsumerProcess

Record = collections.namedtuple("Record", "offset key value timestamp")


@pytest.fixture
def conn(tmp_path):
    connection = cache.connect(tmp_path / "cache.sqlite3")
    apply.Writer(connection).start_restore("kv", 0, position=0, target=100, wipe=True)
    yield connection
    connection.close()


def rows(conn):
    return conn.execute(
        "SELECT key, offset, value FROM entries ORDER BY key"
    ).fetchall()


def position(conn, partition=0):
    return conn.execute(
        "SELECT position, skipped FROM partitions WHERE partition = ?", (partition,)
    ).fetchone()


def test_last_record_of_a_key_wins_and_tombstones_delete(conn):
    records = [
        Record(0, b"a", b"1", 0),
        Record(1, b"b", b"2", 0),
        Record(2, b"a", b"3", 0),
        Record(3, b"b", None, 0),
    ]
    assert apply.apply_batch(conn, {("kv", 0): (records, 4)}) == 4
    assert rows(conn) == [("a", 2, "3")]
    assert position(conn) == (4, 0)
    apply.apply_batch(
        conn, {("kv", 0): ([Record(4, b"a", None, 0), Record(5, b"b", b'"x"', 0)], 6)}
    )
    assert rows(conn) == [("b", 5, '"x"')]


def test_undecodable_records_are_skipped_and_counted(conn):
    records = [
        Record(0, None, b"1", 0),
        Record(1, b"\xff", b"1", 0),
        Record(2, b"k", b"{oops", 0),
        Record(3, b"k", b"\xfe", 0),
        Record(4, b"ok", b"null", 0),
    ]
    apply.apply_batch(conn, {("kv", 0): (records, 5)})
    assert rows(conn) == [("ok", 4, "null")]
    assert position(conn) == (5, 4)


def test_rows_and_position_commit_together_or_not_at_all(conn):
    class Exploding(Record):
        @property
        def key(self):
            raise RuntimeError("crash in the middle of a batch")

    good = [Record(0, b"a", b"1", 0)]
    with pytest.raises(RuntimeError):
        apply.apply_batch(
            conn, {("kv", 0): (good, 1), ("kv", 1): ([Exploding(0, b"x", b"1", 0)], 1)}
        )
    assert rows(conn) == [] and position(conn) == (0, 0)


def test_position_never_moves_back(conn):
    apply.apply_batch(conn, {("kv", 0): ([Record(9, b"a", b"1", 0)], 10)})
    apply.apply_batch(conn, {("kv", 0): ([], 3)})
    assert position(conn)[0] == 10


def test_readers_see_whole_batches(conn, tmp_path):
    reader = cache.Reader(tmp_path / "cache.sqlite3")
    with reader.snapshot() as view:
        assert view.entry("kv", "a") is None
        apply.apply_batch(conn, {("kv", 0): ([Record(0, b"a", b"1", 0)], 1)})
        assert view.entry("kv", "a") is None, "a read transaction keeps its snapshot"
    with reader.snapshot() as view:
        assert view.entry("kv", "a") == (0, 0, "1")
    with pytest.raises(sqlite3.OperationalError):
        reader.connection().execute("DELETE FROM entries")


class TestResumePoint:
    """Where a newly assigned partition is read from."""

    @pytest.fixture
    def process(self, conn):
        process = ConsumerProcess(conf.from_environ({}))
        process.writer = apply.Writer(conn)
        process.retention_ms = {"kvstore.kv": 60_000}
        apply.apply_batch(conn, {("kv", 0): ([Record(41, b"a", b"1", 0)], 42)})
        return process

    def test_no_checkpoint_starts_from_the_log_start(self, process):
        assert process._resume_point("kvstore.kv", "kv", 7, start=5, end=90) == (
            5,
            True,
        )

    def test_a_fresh_checkpoint_resumes(self, process):
        assert process._resume_point("kvstore.kv", "kv", 0, start=0, end=90) == (
            42,
            False,
        )

    def test_a_checkpoint_below_the_log_start_is_rebuilt(self, process):
        assert process._resume_point("kvstore.kv", "kv", 0, start=50, end=90) == (
            50,
            True,
        )

    def test_a_checkpoint_past_the_end_is_rebuilt(self, process):
        assert process._resume_point("kvstore.kv", "kv", 0, start=0, end=10) == (
            0,
            True,
        )

    def test_a_checkpoint_older_than_delete_retention_is_rebuilt(self, process, conn):
        conn.execute("UPDATE partitions SET synced_at = ?", (time.time() - 61,))
        assert process._resume_point("kvstore.kv", "kv", 0, start=0, end=90) == (
            0,
            True,
        )


def test_migrate_creates_the_cache_schema(tmp_path, settings):
    import dataclasses

    from django.core.management import call_command

    settings.KVSTORE = dataclasses.replace(
        settings.KVSTORE, cache_path=tmp_path / "fresh" / "cache.sqlite3"
    )
    call_command("migrate")
    tables = sqlite3.connect(tmp_path / "fresh" / "cache.sqlite3").execute(
        "SELECT name FROM sqlite_master WHERE type = 'table'"
    )
    assert {name for (name,) in tables} == {
        "entries",
        "partitions",
        "topics",
        "member",
        "group_view",
    }


@pytest.mark.parametrize(
    "text",
    [
        "1",
        ' {"a": [1, 2.5e3, null, true]} ',
        '"x"',
        "\n[]\t",
        "12345678901234567890123456789",
        "-0.5",
    ],
)
def test_is_json_accepts_what_json_loads_accepts(text):
    assert apply.is_json(text)


@pytest.mark.parametrize(
    "text",
    ["", " ", "{", '{"a":1}}', "1 2", "'x'", "[1,]", "nul", "\x0c1", '{"a":1} x'],
)
def test_is_json_refuses_what_json_loads_refuses(text):
    assert not apply.is_json(text)
