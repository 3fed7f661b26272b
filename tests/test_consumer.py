"""The consumer process against a real broker: restores, crashes, warm restarts, bad
records, checkpoints."""

import json
import random
import signal
import time

import pytest

from kvstore import log, topics
from tests import rawlog
from tests.instances import Instance, isolated_settings, wait_for


def make_topics(settings):
    with log.admin(settings) as admin:
        topics.ensure(admin, settings)


def latest_per_key(records):
    """What the cache must hold: the last value of every key whose last record is not a
    tombstone."""
    latest = {}
    for _, _, key, value in sorted(records, key=lambda r: (r[0], r[1])):
        latest[key.decode()] = value
    return {
        key: json.loads(value) for key, value in latest.items() if value is not None
    }


def cached(node, namespace="kv"):
    return {
        key: json.loads(value)
        for key, value in node.cache(
            "SELECT key, value FROM entries WHERE namespace = ?", (namespace,)
        )
    }


def states(node):
    return dict(
        ((ns, p), state)
        for ns, p, state in node.cache(
            "SELECT namespace, partition, state FROM partitions"
        )
    )


def applied_since_start(node):
    rows = node.cache("SELECT applied FROM member")
    return rows[0][0] if rows else 0


def write_history(settings, records=100_000, keys=30_000, seed=7):
    """Puts, overwrites and tombstones over `keys` keys, written by a plain producer."""
    rng = random.Random(seed)
    history = []
    for i in range(records):
        key = f"key-{rng.randrange(keys)}"
        history.append(
            (key, None if rng.random() < 0.1 else json.dumps({"n": i, "pad": "x" * 20}))
        )
    rawlog.produce(list(settings.bootstrap_servers), settings.topic("kv"), history)


@pytest.fixture
def node(kafka_bootstrap, tmp_path):
    settings = isolated_settings(kafka_bootstrap)
    make_topics(settings)
    instance = Instance(settings, tmp_path / "node")
    yield instance
    instance.stop()


def test_kill_9_during_a_restore_loses_nothing_and_keeps_nothing_deleted(node):
    write_history(node.settings)
    node.start_consumer()
    wait_for(
        lambda: applied_since_start(node) > 0,
        60,
        "the restore to start",
        node.consumer_log,
        0.005,
    )
    during = states(node)
    node.consumer.send_signal(signal.SIGKILL)
    node.consumer.wait(10)
    assert "restoring" in [
        state for (ns, _), state in during.items() if ns == "kv"
    ], "killed in the middle of a restore"

    node.start_consumer()
    wait_for(
        lambda: set(states(node).values()) == {"ready"},
        120,
        "the restore to finish",
        node.consumer_log,
    )
    records = rawlog.read_all(
        list(node.settings.bootstrap_servers), node.settings.topic("kv")
    )
    assert cached(node) == latest_per_key(records)
    assert len(cached(node)) > 20_000


def test_restore_is_not_served_until_caught_up(node):
    write_history(node.settings, records=60_000)
    node.start_consumer()
    node.start_web()
    seen = set()

    def ready():
        answer = node.api("GET", "/api/kv/key-1")
        seen.add(
            (
                answer.status_code,
                answer.json().get("code") if answer.status_code != 200 else None,
            )
        )
        if answer.status_code == 503:
            assert answer.headers["Retry-After"]
        return node.api("GET", "/readyz").status_code == 200

    wait_for(ready, 120, "ready", node.consumer_log, 0.01)
    assert (404, "not_found") not in seen, "no false 404 while restoring"
    assert seen & {
        (503, "partition_restoring"),
        (503, "consumer_unavailable"),
        (503, "partition_moving"),
    }
    # The progress line follows the last partition's ready mark by a moment.
    wait_for(
        lambda: "restored" in node.consumer_log.read_text(), 10, "the restore's summary"
    )


def test_warm_restart_reads_only_the_delta(node):
    write_history(node.settings, records=20_000)
    node.start_consumer()
    wait_for(
        lambda: states(node) and set(states(node).values()) == {"ready"},
        60,
        "ready",
        node.consumer_log,
    )
    assert node.stop_consumer(signal.SIGTERM) == 0, "SIGTERM exits 0"
    assert set(states(node).values()) == {
        "revoked"
    }, "a stopped consumer serves nothing"

    rawlog.produce(
        list(node.settings.bootstrap_servers),
        node.settings.topic("kv"),
        [(f"new-{i}", str(i)) for i in range(10)],
    )
    began = time.monotonic()
    node.start_consumer()
    wait_for(
        lambda: set(states(node).values()) == {"ready"}
        and applied_since_start(node) == 10,
        60,
        "ready",
        node.consumer_log,
    )
    took = time.monotonic() - began
    time.sleep(0.5)
    assert (
        applied_since_start(node) == 10
    ), "only the 10 new records were fetched and applied"
    assert cached(node)["new-9"] == 9
    print(f"warm restart to ready: {took:.2f}s")


def test_sigterm_leaves_the_group_at_once(node):
    node.start_consumer()
    wait_for(
        lambda: states(node) and set(states(node).values()) == {"ready"},
        60,
        "ready",
        node.consumer_log,
    )
    began = time.monotonic()
    assert node.stop_consumer(signal.SIGTERM) == 0
    assert time.monotonic() - began < 5
    with log.admin(node.settings) as admin:
        _, members, _ = admin.group(node.settings.group_id)
    assert (
        members == 0
    ), "the member left the group instead of waiting for a session timeout"


def test_undecodable_records_are_counted_and_skipped(node):
    node.start_consumer()
    wait_for(
        lambda: states(node) and set(states(node).values()) == {"ready"},
        60,
        "ready",
        node.consumer_log,
    )
    bootstrap, topic = list(node.settings.bootstrap_servers), node.settings.topic("kv")
    # Every key here is one of partition 0's (murmur2 over 3 partitions): a record on
    # another key's partition would be counted as misplaced, not skipped.
    rawlog.produce(
        bootstrap,
        topic,
        [
            (b"bad-json-1", b"{not json"),
            (b"\xff\xfe", b"1"),
            (b"bad-utf8-8", b"\xff"),
            ("good", "1"),
        ],
        partition=0,
    )
    wait_for(
        lambda: cached(node).get("good") == 1,
        20,
        "the record after the bad ones",
        node.consumer_log,
    )
    assert node.cache(
        "SELECT skipped FROM partitions WHERE namespace = 'kv' AND partition = 0"
    ) == [(3,)]
    assert "bad-json-1" not in cached(node)
    assert node.consumer.poll() is None, "the consumer keeps running"


def test_group_offsets_are_committed_for_standard_tools(node):
    rawlog.produce(
        list(node.settings.bootstrap_servers),
        node.settings.topic("kv"),
        [(f"k{i}", str(i)) for i in range(300)],
    )
    node.start_consumer()
    wait_for(
        lambda: states(node) and set(states(node).values()) == {"ready"},
        60,
        "ready",
        node.consumer_log,
    )
    with log.admin(node.settings) as admin:
        ends = admin.offsets(node.settings.topic("kv"), range(3))

        def committed():
            _, _, offsets = admin.group(node.settings.group_id)
            return {
                p: offset
                for (t, p), offset in offsets.items()
                if t == node.settings.topic("kv")
            }

        wait_for(lambda: committed() == ends, 10, "committed offsets to reach the end")


def test_a_checkpoint_older_than_delete_retention_is_rebuilt(kafka_bootstrap, tmp_path):
    settings = isolated_settings(
        kafka_bootstrap, topic_configs=(("delete.retention.ms", "1500"),)
    )
    make_topics(settings)
    node = Instance(settings, tmp_path / "node")
    try:
        rawlog.produce(
            list(settings.bootstrap_servers),
            settings.topic("kv"),
            [(f"k{i}", str(i)) for i in range(50)],
        )
        node.start_consumer()
        wait_for(
            lambda: states(node) and set(states(node).values()) == {"ready"},
            60,
            "ready",
            node.consumer_log,
        )
        node.stop_consumer()
        # Longer than delete.retention.ms: tombstones may have been compacted away since.
        time.sleep(2.5)
        node.start_consumer()
        wait_for(
            lambda: set(states(node).values()) == {"ready"}
            and applied_since_start(node) == 50,
            60,
            "rebuilt",
            node.consumer_log,
        )
        assert "not trusted" in node.consumer_log.read_text()
        assert len(cached(node)) == 50
    finally:
        node.stop()


def test_a_second_consumer_on_the_same_cache_is_refused(node):
    node.start_consumer()
    wait_for(
        lambda: states(node) and set(states(node).values()) == {"ready"},
        60,
        "ready",
        node.consumer_log,
    )
    first = node.consumer
    second = node.start_consumer()
    assert second.wait(30) == 1
    assert "another kvstore_consume already writes" in node.consumer_log.read_text()
    node.consumer = first
