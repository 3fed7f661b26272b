"""Records the store did not write, from plain Kafka producers: values no reader could
read back, records another partitioner put on the wrong partition, bursts the lag must
show, and a consumer that stops on an error saying why. One real instance, a real
broker."""

import json
import os
import signal
import subprocess
import sys
import zlib

import pytest
from kafka import KafkaProducer
from kafka.partitioner import Partitioner

from kvstore import log, topics
from kvstore.partitioner import partition_for
from tests import rawlog
from tests.brokers import ROOT
from tests.instances import Instance, environment, isolated_settings, wait_for

PARTITIONS = 3


@pytest.fixture(scope="module")
def node(kafka_bootstrap, tmp_path_factory):
    settings = isolated_settings(kafka_bootstrap, partitions=PARTITIONS)
    with log.admin(settings) as admin:
        topics.ensure(admin, settings)
    instance = Instance(settings, tmp_path_factory.mktemp("foreign"))
    try:  # stopped even when it fails to start
        instance.start()
        yield instance
    finally:
        instance.stop()


def local(node):
    """{(namespace, partition): this instance's row in /api/cluster}."""
    rows = node.api("GET", "/api/cluster").json()["local"]
    return {(row["namespace"], row["partition"]): row for row in rows}


def total(node, field, namespace="kv"):
    return sum(row[field] for (ns, _), row in local(node).items() if ns == namespace)


def listed(node, namespace="kv"):
    answer = node.api("GET", f"/api/{namespace}/?limit=1000")
    assert answer.status_code == 200, answer.text
    return answer.json()["results"]


def produce(node, records, namespace="kv"):
    bootstrap = list(node.settings.bootstrap_servers)
    return rawlog.produce(bootstrap, node.settings.topic(namespace), records)


def wait_applied(node, key, value, namespace="kv"):
    wait_for(
        lambda: node.api("GET", f"/api/{namespace}/{key}").json() == value,
        30,
        f"{key} to be served",
        node.consumer_log,
    )


BAD_VALUES = {
    "deep": b"[" * 1000 + b"]" * 1000,
    "deeper": b'{"a":' * 5000 + b"1" + b"}" * 5000,
    "nan": b"NaN",
    "inf-token": b'{"x": Infinity}',
    "overflow": b"[1e400]",
    "surrogate": b'"\\ud800"',
    "not-utf8": b'"\xff\xfe"',
    "utf8-surrogate": b'"\xed\xa0\x80"',
    "huge-int": b"9" * 5000,
    "not-json": b"{oops",
}


def test_unusable_values_are_skipped_and_counted_and_the_partition_keeps_serving(
    node,
):
    skipped = total(node, "skipped")
    had_value = "foreign-had-value"
    assert node.api("PUT", f"/api/kv/{had_value}", json="old").status_code == 201
    produce(node, [(f"foreign-{name}", value) for name, value in BAD_VALUES.items()])
    produce(node, [(had_value, b"NaN")] + [(f"after-{p}", "1") for p in range(40)])
    for p in range(40):
        wait_applied(node, f"after-{p}", 1)

    assert total(node, "skipped") == skipped + len(BAD_VALUES) + 1
    for name in BAD_VALUES:
        answer = node.api("GET", f"/api/kv/foreign-{name}")
        assert answer.status_code == 404 and answer.json()["code"] == "not_found"
    # Compaction will keep only the unusable record: no instance serves "old" now.
    assert node.api("GET", f"/api/kv/{had_value}").status_code == 404
    keys = {item["key"] for item in listed(node)}
    assert not {f"foreign-{name}" for name in BAD_VALUES} & keys
    assert node.consumer.poll() is None, "the consumer never exits on a record"
    assert node.api("GET", "/readyz").status_code == 200
    for p in range(PARTITIONS):  # every partition still takes writes
        key = next(
            f"w{i}" for i in range(100) if partition_for(f"w{i}", PARTITIONS) == p
        )
        assert node.api("PUT", f"/api/kv/{key}", json=p).status_code in (200, 201)
        assert node.api("GET", f"/api/kv/{key}").json() == p


def test_foreign_users_of_any_shape_are_served_safely(node):
    produce(
        node,
        [("u-list", "[1, 2]"), ("u-number", "7"), ("u-id", '{"id": "x", "name": "N"}')],
        namespace="users",
    )
    wait_for(
        lambda: node.api("GET", "/api/users/u-id").status_code == 200,
        30,
        "the foreign users",
        node.consumer_log,
    )
    assert node.api("GET", "/api/users/u-list").json() == {
        "id": "u-list",
        "value": [1, 2],
    }
    assert node.api("GET", "/api/users/u-id").json() == {"id": "u-id", "name": "N"}
    users = {user["id"] for user in listed(node, "users")}
    assert {"u-list", "u-number", "u-id"} <= users
    patched = node.api(
        "PATCH", "/api/users/u-number", json={"name": "A", "email": "a@example.com"}
    )
    assert patched.status_code == 200
    assert patched.json() == {"id": "u-number", "name": "A", "email": "a@example.com"}


class Crc32Partitioner(Partitioner):
    """librdkafka's default for keyed records (kcat's `consistent_random`): CRC32."""

    def partition(self, topic, key, serialized_key, value, serialized_value, cluster):
        partitions = sorted(cluster.partitions_for_topic(topic))
        return partitions[zlib.crc32(serialized_key) % len(partitions)]


def test_records_from_another_partitioner_count_only_on_their_keys_partition(node):
    keys = [f"kcat-{i}" for i in range(30)]
    placed = {k: zlib.crc32(k.encode()) % PARTITIONS for k in keys}
    wrong = [k for k in keys if placed[k] != partition_for(k, PARTITIONS)]
    right = [k for k in keys if k not in wrong]
    assert len(wrong) >= 10 and right, "the two partitioners disagree on many keys"
    real = wrong[:5]  # these also get their real entry, through the store
    for key in real:
        assert node.api("PUT", f"/api/kv/{key}", json="real").status_code == 201
    misplaced = total(node, "misplaced")

    producer = KafkaProducer(
        bootstrap_servers=list(node.settings.bootstrap_servers),
        partitioner=Crc32Partitioner(),
    )
    topic = node.settings.topic("kv")
    for key in keys:
        producer.send(topic, key=key.encode(), value=b'"kcat"')
    for key in real:  # a misplaced tombstone must not delete the real entry either
        producer.send(topic, key=key.encode(), value=None)
    producer.flush()
    producer.close()
    for key in right:
        wait_applied(node, key, "kcat")
    wait_for(
        lambda: total(node, "misplaced") == misplaced + len(wrong) + len(real),
        30,
        "the misplaced records to be counted",
    )
    _check_placement(node, wrong, right, real)

    # The same outcome from a restore from scratch, which applies the partitions in
    # another order.
    node.stop()
    for suffix in ("", "-wal", "-shm"):
        path = str(node.settings.cache_path) + suffix
        if os.path.exists(path):
            os.remove(path)
    node.start()
    _check_placement(node, wrong, right, real)


def _check_placement(node, wrong, right, real):
    for key in right:
        assert node.api("GET", f"/api/kv/{key}").json() == "kcat"
    for key in wrong:
        answer = node.api("GET", f"/api/kv/{key}")
        if key in real:
            assert answer.status_code == 200 and answer.json() == "real"
        else:
            assert answer.status_code == 404
    keys = [item["key"] for item in listed(node)]
    assert len(keys) == len(set(keys)), "no key is listed twice"
    assert set(right) | set(real) <= set(keys)
    assert not (set(wrong) - set(real)) & set(keys), "misplaced keys are not listed"


def test_lag_comes_from_kafkas_end_offsets_now(node):
    before = local(node)
    os.kill(node.consumer.pid, signal.SIGSTOP)
    try:
        produce(node, [(f"burst-{i}", str(i)) for i in range(500)])
        described = node.api("GET", "/api/cluster").json()
    finally:
        os.kill(node.consumer.pid, signal.SIGCONT)
    assert described["end_offsets_from"] == "kafka"
    rows = [row for row in described["local"] if row["namespace"] == "kv"]
    assert sum(row["lag"] for row in rows) == 500
    for row in rows:
        was = before[("kv", row["partition"])]
        assert row["applied_offset"] == was["applied_offset"]
        assert row["end_offset"] == row["applied_offset"] + row["lag"]
    wait_for(
        lambda: total(node, "lag") == 0,
        60,
        "the burst to be applied",
        node.consumer_log,
    )


def test_a_consumer_that_stops_on_an_error_says_why(kafka_bootstrap, tmp_path):
    # Its topics were never created: the consumer stops at start, as it would when
    # Kafka refuses its credentials, and leaves the reason in the cache.
    settings = isolated_settings(kafka_bootstrap, partitions=PARTITIONS)
    node = Instance(settings, tmp_path / "node")
    try:
        node.start_consumer()
        assert node.consumer.wait(60) != 0
        node.start_web()
        ready = node.api("GET", "/readyz")
        assert ready.status_code == 503
        assert "kvstore_init" in ready.json()["consumer_error"]
        answer = node.api("GET", "/api/kv/any")
        assert answer.status_code == 503 and answer.headers["Retry-After"]
        assert answer.json()["code"] == "consumer_unavailable"
        assert "kvstore_init" in answer.json()["reason"]
        assert "kvstore_init" in answer.json()["detail"]
        status = subprocess.run(
            [sys.executable, "manage.py", "kvstore_status", "--url", node.url],
            cwd=ROOT,
            env=environment(node.settings),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert "NOT RUNNING" in status.stdout
        assert "last error" in status.stdout and "kvstore_init" in status.stdout
    finally:
        node.stop()
