"""The consumer's pure core: applying batches of records to the cache, one transaction
per batch."""

import collections
import sqlite3
import time

import pytest

from kvstore import apply, cache, conditions, conf, idempotency, rejoin
from kvstore.consumer import ConsumerProcess
from kvstore.errors import KafkaTransient, MemberFenced, StoreUnavailable
from kvstore.partitioner import partition_for, partition_of_bytes

Record = collections.namedtuple("Record", "offset key value timestamp")
Conditional = collections.namedtuple(
    "Conditional", "offset key value timestamp headers"
)


def based(offset, key, value, on, timestamp=None):
    """A record carrying the condition "based on version `on`" ("p-o" or "absent")."""
    timestamp = time.time() * 1000 if timestamp is None else timestamp
    return Conditional(offset, key, value, timestamp, [("kvstore-if", on.encode())])


@pytest.fixture
def conn(tmp_path):
    connection = cache.connect(tmp_path / "cache.sqlite3")
    # One partition: every key's own partition is 0.
    apply.Writer(connection).set_topics([("kv", "kvstore.kv", 1, 1000000, 86400000)])
    apply.Writer(connection).start_restore("kv", 0, position=0, target=100, wipe=True)
    yield connection
    connection.close()


def applied_in_chunks(tmp_path, records, sizes, **options):
    """For each chunk size, a fresh cache of partition kv/0 that applied `records` in
    chunks of that size (an applier sees them in whatever batches a poll returns)."""
    for size in sizes:
        connection = cache.connect(tmp_path / f"{size}.sqlite3")
        apply.Writer(connection).start_restore("kv", 0, 0, 100, wipe=True)
        for start in range(0, len(records), size):
            chunk = records[start : start + size]
            apply.apply_batch(
                connection, {("kv", 0): (chunk, start + len(chunk))}, **options
            )
        yield connection


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
        "rejected",
        "idempotency",
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


class TestConditionsDecidedByTheLog:
    """A conditional record takes effect only if the key is still at the version it was
    based on where it landed; every applier decides alike."""

    def rejections(self, conn):
        return conn.execute(
            "SELECT offset, key, current, settled FROM rejected ORDER BY offset"
        ).fetchall()

    def test_a_condition_that_holds_takes_effect(self, conn):
        records = [based(0, b"k", b"1", "absent"), based(1, b"k", b"2", "0-0")]
        apply.apply_batch(conn, {("kv", 0): (records, 2)})
        assert rows(conn) == [("k", 1, "2")] and self.rejections(conn) == []

    def test_a_stale_condition_is_rejected_and_recorded(self, conn):
        unsettled = conditions.Unsettled()
        records = [
            Record(0, b"k", b"1", 0),
            based(1, b"k", b"2", "0-0"),
            based(2, b"k", b"3", "0-0"),  # based on the same version: too late
            based(3, b"k", None, "0-0"),  # a late tombstone must not delete
        ]
        apply.apply_batch(conn, {("kv", 0): (records, 4)}, unsettled=unsettled)
        assert rows(conn) == [("k", 1, "2")]
        assert self.rejections(conn) == [(2, "k", "0-1", 0), (3, "k", "0-1", 0)]
        assert unsettled.pending("kv", 0) == {"k"}

    def test_a_later_record_that_takes_effect_settles_the_key(self, conn):
        unsettled = conditions.Unsettled()
        apply.apply_batch(
            conn,
            {
                ("kv", 0): (
                    [Record(0, b"k", b"1", 0), based(1, b"k", b"2", "absent")],
                    2,
                )
            },
            unsettled=unsettled,
        )
        assert unsettled.pending("kv", 0) == {"k"}
        apply.apply_batch(
            conn, {("kv", 0): ([based(2, b"k", b"1", "0-0")], 3)}, unsettled=unsettled
        )
        assert unsettled.pending("kv", 0) == set()
        assert self.rejections(conn) == [(1, "k", "0-0", 1)]
        assert rows(conn) == [("k", 2, "1")]

    def test_absent_holds_only_for_a_missing_or_deleted_key(self, conn):
        records = [
            based(0, b"k", b"1", "absent"),
            based(1, b"k", b"2", "absent"),
            Record(2, b"k", None, 0),
            based(3, b"k", b"3", "absent"),
        ]
        apply.apply_batch(conn, {("kv", 0): (records, 4)})
        assert rows(conn) == [("k", 3, "3")]
        assert [r[0] for r in self.rejections(conn)] == [1]

    def test_records_older_than_the_window_are_not_judged_again(self, conn):
        old = time.time() * 1000 - 60_000
        records = [based(0, b"k", b"1", "7-7", timestamp=old)]
        apply.apply_batch(conn, {("kv", 0): (records, 1)}, window_ms=30_000)
        assert rows(conn) == [("k", 0, "1")], "its re-assert carries the outcome"
        young = [based(1, b"k", b"2", "7-7")]
        apply.apply_batch(conn, {("kv", 0): (young, 2)}, window_ms=30_000)
        assert rows(conn) == [("k", 0, "1")]

    def test_a_foreign_header_that_does_not_parse_is_unconditional(self, conn):
        record = Conditional(0, b"k", b"1", 0, [("kvstore-if", b"not-a-version")])
        apply.apply_batch(conn, {("kv", 0): ([record], 1)})
        assert rows(conn) == [("k", 0, "1")]

    def test_every_applier_decides_alike(self, tmp_path):
        records = [Record(0, b"k", b"1", 0)] + [
            based(i, b"k", str(i).encode(), f"0-{i - 1 - (i % 3 == 0)}")
            for i in range(1, 30)
        ]
        outcomes = [
            (rows(connection), self.rejections(connection))
            for connection in applied_in_chunks(tmp_path, records, (1, 7, 30))
        ]
        assert outcomes[0] == outcomes[1] == outcomes[2]


@pytest.mark.parametrize(
    "text",
    [
        "[" * 600 + "]" * 600,
        '{"a":' * 2000 + "1" + "}" * 2000,
        "[" * 100000 + "]" * 100000,
        "NaN",
        "[1, Infinity]",
        '{"x": -Infinity}',
        "1e400",
        "[-1e999]",
        '"\\ud800"',
        '{"\\udfff": 1}',
        '"\\ude00\\ud83d"',
        "1" * 5000,
    ],
)
def test_is_json_refuses_what_no_reader_could_read_back(text):
    assert not apply.is_json(text)


@pytest.mark.parametrize(
    "text",
    [
        "[" * 512 + "]" * 512,
        '"[[[[{{{{" ' + "",
        '"\\ud83d\\ude00"',
        '"\\\\ud800"',
        "1e308",
        '{"k": "' + "[" * 600 + '"}',
    ],
)
def test_is_json_keeps_deep_enough_values_and_paired_surrogates(text):
    assert apply.is_json(text)


def test_a_record_that_cannot_be_used_leaves_its_key_without_a_value(conn):
    # Compaction keeps only a key's last record: if that one cannot be used, every
    # instance will sooner or later have no value for the key, so none serves the old
    # one now.
    records = [
        Record(0, b"a", b"1", 0),
        Record(1, b"b", b"2", 0),
        Record(2, b"a", b"NaN", 0),
        Record(3, b"b", b"[" * 1000 + b"]" * 1000, 0),
        Record(4, b"c", b"3", 0),
        Record(5, b"c", b'"\xff"', 0),
    ]
    apply.apply_batch(conn, {("kv", 0): (records, 6)})
    assert rows(conn) == []
    assert position(conn) == (6, 3)
    apply.apply_batch(conn, {("kv", 0): ([Record(6, b"a", b"4", 0)], 7)})
    assert rows(conn) == [("a", 6, "4")], "a later usable record brings the key back"


class TestMisplacedRecords:
    """A record counts only on its key's murmur2 partition."""

    PARTITIONS = 3

    @pytest.fixture
    def three(self, tmp_path):
        connection = cache.connect(tmp_path / "cache.sqlite3")
        writer = apply.Writer(connection)
        writer.set_topics([("kv", "kvstore.kv", self.PARTITIONS, 1000000, 86400000)])
        for p in range(self.PARTITIONS):
            writer.start_restore("kv", p, position=0, target=100, wipe=True)
        yield connection
        connection.close()

    def keys_on(self, partition, count):
        keys = (f"key-{i}" for i in range(1000))
        on = [k for k in keys if partition_for(k, self.PARTITIONS) == partition]
        return on[:count]

    def counts(self, conn):
        return dict(
            ((p, (skipped, misplaced)))
            for p, skipped, misplaced in conn.execute(
                "SELECT partition, skipped, misplaced FROM partitions"
            )
        )

    def test_a_misplaced_put_or_tombstone_changes_nothing(self, three):
        home, other = self.keys_on(0, 1)[0], 1
        apply.apply_batch(three, {("kv", 0): ([Record(0, home.encode(), b"1", 0)], 1)})
        misplaced = [
            Record(0, home.encode(), b"2", 0),
            Record(1, home.encode(), None, 0),
        ]
        apply.apply_batch(three, {("kv", other): (misplaced, 2)})
        assert rows(three) == [(home, 0, "1")]
        assert three.execute("SELECT partition FROM entries").fetchall() == [(0,)]
        assert self.counts(three) == {0: (0, 0), 1: (0, 2), 2: (0, 0)}

    def test_the_outcome_does_not_depend_on_the_order_partitions_are_applied(
        self, three
    ):
        home = self.keys_on(2, 1)[0].encode()
        right = {("kv", 2): ([Record(5, home, b'"right"', 0)], 6)}
        wrong = {("kv", 0): ([Record(9, home, b'"wrong"', 0)], 10)}
        apply.apply_batch(three, right)
        apply.apply_batch(three, wrong)
        first = rows(three)
        three.execute("DELETE FROM entries")
        apply.apply_batch(three, wrong)
        apply.apply_batch(three, right)
        assert rows(three) == first == [(home.decode(), 5, '"right"')]

    def test_undecodable_keys_are_placed_by_their_bytes(self, three):
        key = next(
            bytes([0xFF, i])
            for i in range(256)
            if partition_of_bytes(bytes([0xFF, i]), self.PARTITIONS) == 1
        )
        apply.apply_batch(three, {("kv", 1): ([Record(0, key, b"1", 0)], 1)})
        apply.apply_batch(three, {("kv", 0): ([Record(0, key, b"1", 0)], 1)})
        assert self.counts(three) == {0: (0, 1), 1: (1, 0), 2: (0, 0)}


class FlakyGroup:
    """A group member whose Kafka fails `failures` times before it answers."""

    def __init__(self, failures, events=()):
        self.failures, self.queued, self.seeks = failures, list(events), []

    def _maybe_fail(self):
        if self.failures:
            self.failures -= 1
            raise KafkaTransient("Kafka failed to poll: socket disconnected")

    def poll(self, timeout_ms):
        self._maybe_fail()
        return {}

    def events(self):
        events, self.queued = self.queued, []
        return events

    def offsets(self, partitions):
        self._maybe_fail()
        return {tp: (0, 0) for tp in partitions}

    def seek(self, topic, partition, offset):
        self.seeks.append((topic, partition, offset))

    def fenced(self):
        return False


class TestKafkaFailingForAMoment:
    """A broker killed or a coordinator moving must not stop the consumer: it goes on
    and takes in its partitions once Kafka answers (it crashed on this, in a broker
    kill fault run)."""

    @pytest.fixture
    def process(self, conn):
        process = ConsumerProcess(conf.from_environ({}))
        process.writer = apply.Writer(conn)
        process.retention_ms = {"kvstore.kv": 60_000}
        return process

    def test_a_failed_poll_fetches_nothing_and_goes_on(self, process):
        assert process._poll(FlakyGroup(failures=1)) == {}

    def test_an_assignment_waits_until_its_offsets_are_known(self, process):
        group = FlakyGroup(failures=2, events=[("assigned", [("kvstore.kv", 3)])])
        assert process._handle_events(group) == set()
        assert process.held == {} and process._pending == {("kvstore.kv", 3)}
        assert process._handle_events(group) == set()  # Kafka fails again
        assert process._handle_events(group) == {("kvstore.kv", 3)}
        assert ("kvstore.kv", 3) in process.held and process._pending == set()
        assert group.seeks == [("kvstore.kv", 3, 0)]

    def test_a_pending_partition_revoked_is_forgotten(self, process):
        group = FlakyGroup(failures=1, events=[("assigned", [("kvstore.kv", 3)])])
        process._handle_events(group)
        group.queued = [("revoked", [("kvstore.kv", 3)])]
        assert process._handle_events(group) == set()
        assert process._pending == set() and process.held == {}


def idempotent(offset, key, value, scope, request="r1", outcome="created", **kw):
    """A record of an idempotent write (kvstore.idempotency's headers)."""
    timestamp = kw.pop("timestamp", time.time() * 1000)
    headers = idempotency.Idempotent(scope, request).headers(outcome)
    headers += tuple(kw.pop("headers", ()))
    return Conditional(offset, key, value, timestamp, list(headers))


class TestIdempotentRecords:
    """A record repeating an idempotent write of its key, within the window, takes no
    effect wherever it lands; the first answer is recorded for retries."""

    def answers(self, conn):
        return conn.execute(
            "SELECT key, scope, offset, request, outcome, value, current "
            "FROM idempotency ORDER BY key, scope"
        ).fetchall()

    def test_a_repeat_takes_no_effect_and_the_first_answer_is_kept(self, conn):
        unsettled = conditions.Unsettled()
        records = [
            idempotent(0, b"k", b"1", "s1"),
            Record(1, b"k", b"2", 0),
            idempotent(2, b"k", b"1", "s1", outcome="replaced"),  # the retry
            idempotent(3, b"j", b"3", "s1"),  # the same scope on another key
        ]
        apply.apply_batch(conn, {("kv", 0): (records, 4)}, unsettled=unsettled)
        assert rows(conn) == [("j", 3, "3"), ("k", 1, "2")]
        assert self.answers(conn) == [
            ("j", "s1", 3, "r1", "created", "3", None),
            ("k", "s1", 0, "r1", "created", "1", None),
        ]
        rejected = conn.execute("SELECT offset, current FROM rejected").fetchall()
        assert rejected == [(2, "0-1")], "recorded as taking no effect"
        assert unsettled.pending("kv", 0) == {"k"}, "its owner re-asserts the key"

    def test_a_repeat_after_the_window_is_a_new_write(self, conn):
        first = idempotent(0, b"k", b"1", "s", timestamp=1_000)
        late = idempotent(1, b"k", b"2", "s", timestamp=1_000 + 60_001)
        apply.apply_batch(conn, {("kv", 0): ([first, late], 2)}, idempotency_ms=60_000)
        assert rows(conn) == [("k", 1, "2")]
        assert self.answers(conn)[0][2] == 1, "the later one answers from now on"

    def test_a_rejected_conditional_write_answers_412_to_its_retries(self, conn):
        records = [
            Record(0, b"k", b"1", 0),
            idempotent(1, b"k", b"2", "s", headers=[("kvstore-if", b"0-7")]),
            idempotent(2, b"k", b"2", "s", headers=[("kvstore-if", b"0-0")]),
        ]
        apply.apply_batch(conn, {("kv", 0): (records, 3)})
        assert rows(conn) == [("k", 0, "1")], "neither the stale one nor its repeat"
        assert self.answers(conn) == [("k", "s", 1, "r1", "rejected", None, "0-0")]

    def test_every_applier_decides_repeats_alike(self, tmp_path):
        records = [
            idempotent(i, b"k", str(i).encode(), f"s{i % 4}", timestamp=i * 1000)
            for i in range(24)
        ]
        outcomes = [
            (rows(connection), self.answers(connection))
            for connection in applied_in_chunks(
                tmp_path, records, (1, 5, 24), idempotency_ms=10_000
            )
        ]
        assert outcomes[0] == outcomes[1] == outcomes[2]
        # s3 first at 3 s, repeated at 7 and 11 s (no effect), new again at 15 s
        # (past the window), repeated at 19 and 23 s: 15 is the last that counted.
        assert outcomes[0][0] == [("k", 15, "15")]

    def test_pruned_rejections_leave_a_mark_of_what_is_no_longer_known(self, conn):
        records = [Record(0, b"k", b"1", 0), based(1, b"k", b"2", "0-9")]
        records += [Record(2, b"k", b"3", 0)]  # settles k
        apply.apply_batch(conn, {("kv", 0): (records, 3)})
        writer = apply.Writer(conn)
        writer.prune_rejections(time.time() - 3600)
        assert cache.View(conn).no_effect("kv", 0, 0, 3) == ({1}, 0)
        writer.prune_rejections(time.time() + 1)
        assert cache.View(conn).no_effect("kv", 0, 0, 3) == (set(), 2)


class TestRejoining:
    """The consumer joins its group again with a new member when Kafka fenced it, or
    when it has held no lease for far longer than any rebalance (kvstore.rejoin)."""

    def test_a_lease_held_is_never_overdue(self):
        dog = rejoin.Watchdog(3000, clock=lambda: 1000.0)
        assert not dog.overdue(lease_until=10.0, now_lease=9.0)

    def test_overdue_only_after_long_without_a_lease(self):
        now = [0.0]
        dog = rejoin.Watchdog(3000, clock=lambda: now[0])
        assert dog.after == 8.0
        assert not dog.overdue(None, 0)
        now[0] = 7.9
        assert not dog.overdue(None, 0)
        now[0] = 8.0
        assert dog.overdue(None, 0)
        dog.rejoined()
        assert not dog.overdue(None, 0), "counted again from the rejoin"

    def test_fenced_again_and_again_is_another_process_with_our_id(self):
        now = [0.0]
        dog = rejoin.Watchdog(3000, clock=lambda: now[0])
        for _ in range(rejoin.FENCINGS_ALLOWED):
            dog.fenced()
        now[0] = rejoin.FENCING_WINDOW + 1  # the old ones no longer count
        dog.fenced()
        for _ in range(rejoin.FENCINGS_ALLOWED - 1):
            dog.fenced()
        with pytest.raises(StoreUnavailable, match="group.instance.id"):
            dog.fenced()

    def test_a_fenced_member_is_replaced_and_serves_nothing_meanwhile(self, conn):
        class Fenced(FlakyGroup):
            abandoned = False

            def poll(self, timeout_ms):
                raise MemberFenced("Kafka failed to poll: [Error 82] Fenced")

            def abandon(self):
                self.abandoned = True

        process = ConsumerProcess(conf.from_environ({}))
        process.writer = apply.Writer(conn)
        process.retention_ms = {"kvstore.kv": 60_000}
        old, new = Fenced(0, [("assigned", [("kvstore.kv", 3)])]), FlakyGroup(0)
        process.group = old
        process._handle_events(old)
        assert ("kvstore.kv", 3) in process.held
        process._member = lambda: new
        assert process._poll(old) == {}
        assert process.group is new and old.abandoned
        assert process.held == {}
        assert cache.View(conn).partition("kv", 3).state == cache.REVOKED
