"""Safety under faults, against a real broker and real instances: conditions decided by
the log, the membership lease, static membership."""

import dataclasses
import signal
import time

import pytest

from kvstore import log, topics
from kvstore.partitioner import partition_for
from tests import rawlog
from tests.instances import Instance, isolated_settings, wait_for


@pytest.fixture
def node(kafka_bootstrap, tmp_path):
    settings = isolated_settings(
        kafka_bootstrap, apply_timeout=2.0, heartbeat_timeout=5.0
    )
    with log.admin(settings) as admin:
        topics.ensure(admin, settings)
    instance = Instance(settings, tmp_path / "node").start()
    yield instance
    instance.stop()


def etag_of(answer):
    return answer.headers["ETag"].strip('"')


def test_a_late_conditional_record_takes_no_effect_and_its_key_is_reasserted(node):
    """A record based on a version that was replaced before it landed (a produce that
    timed out and was appended later, or a deposed owner's write) takes no effect, and
    the owner appends a re-assert so compaction cannot keep the rejected one."""
    first = node.api("PUT", "/api/kv/counter", json=1)
    v1 = etag_of(first)
    second = node.api("PUT", "/api/kv/counter", json=2, headers={"If-Match": f'"{v1}"'})
    assert second.status_code == 200, second.text
    topic = node.settings.topic("kv")
    partition = partition_for("counter", node.settings.partitions)
    [(_, late)] = rawlog.produce(
        list(node.settings.bootstrap_servers),
        topic,
        [("counter", "99")],
        partition=partition,
        headers=[("kvstore-if", v1.encode())],
    )
    wait_for(
        lambda: node.cache(
            "SELECT position FROM partitions WHERE namespace = 'kv' AND partition = ?",
            (partition,),
        )[0][0]
        > late,
        10,
        "the late record to be applied",
    )
    answer = node.api("GET", "/api/kv/counter")
    assert answer.json() == 2, "the late record took no effect"
    assert node.cache("SELECT offset, current FROM rejected") == [
        (late, etag_of(second))
    ]

    def reasserted():
        records = rawlog.read_all(
            list(node.settings.bootstrap_servers), topic, headers=True
        )
        after = [r for r in records if r[2] == b"counter" and r[1] > late]
        return after and after[-1][3] == b"2" and "kvstore-reassert" in after[-1][4]

    wait_for(reasserted, 15, "the owner to re-assert the key", node.consumer_log)
    wait_for(
        lambda: node.cache("SELECT settled FROM rejected") == [(1,)],
        10,
        "the re-assert to settle the key",
    )
    assert node.api("GET", "/api/kv/counter").json() == 2
    stale = node.api("PUT", "/api/kv/counter", json=3, headers={"If-Match": f'"{v1}"'})
    assert stale.status_code == 412


def test_a_timed_out_conditional_retry_can_never_take_effect_twice(node):
    """Two records based on the same version: whatever their order in the log, only
    the first takes effect (what a client's retry after a 504 produces)."""
    v1 = etag_of(node.api("PUT", "/api/kv/once", json=0))
    partition = partition_for("once", node.settings.partitions)
    rawlog.produce(
        list(node.settings.bootstrap_servers),
        node.settings.topic("kv"),
        [("once", "1"), ("once", "2")],
        partition=partition,
        headers=[("kvstore-if", v1.encode())],
    )
    wait_for(
        lambda: node.api("GET", "/api/kv/once").json() != 0, 10, "the records applied"
    )
    assert node.api("GET", "/api/kv/once").json() == 1


def test_a_paused_consumer_stops_its_instance_answering_within_its_lease(node):
    """SIGSTOP of the consumer (a frozen process) makes the web side answer 503 once
    the lease ends, before the coordinator could give the partitions away, and long
    before the heartbeat timeout."""
    assert node.api("PUT", "/api/kv/k", json=1).status_code == 201
    node.consumer.send_signal(signal.SIGSTOP)
    paused = time.monotonic()
    try:
        wait_for(
            lambda: node.api("GET", "/api/kv/k").status_code == 503,
            10,
            "the lease to end",
        )
        waited = time.monotonic() - paused
        answer = node.api("GET", "/api/kv/k")
        assert answer.json()["code"] == "lease_expired", answer.text
        session = node.settings.session_timeout_ms / 1000
        assert waited < session, f"503 after {waited:.1f}s, session {session}s"
        assert node.api("GET", "/readyz").json()["lease"] is False
        assert node.api("PUT", "/api/kv/k", json=2).status_code == 503
    finally:
        node.consumer.send_signal(signal.SIGCONT)
    node.wait_ready()
    assert node.api("GET", "/api/kv/k").json() == 1


def test_a_consumer_restarted_after_a_crash_serves_again_at_once(node):
    """Static membership: the restarted consumer takes its partitions back without a
    rebalance, from its warm checkpoint, instead of waiting out its old session."""
    for i in range(50):
        assert node.api("PUT", f"/api/kv/k{i}", json=i).status_code == 201
    node.consumer.send_signal(signal.SIGKILL)
    node.consumer.wait(10)
    assert node.api("GET", "/readyz").status_code == 503, "a dead consumer is seen"
    restarted = time.monotonic()
    node.start_consumer()
    wait_for(
        lambda: all(
            node.api("GET", f"/api/kv/k{i}").status_code == 200 for i in (0, 7)
        ),
        20,
        "keys to be served again",
        node.consumer_log,
    )
    took = time.monotonic() - restarted
    log_text = node.consumer_log.read_text()
    resumed = [line for line in log_text.splitlines() if "assigned" in line][-6:]
    assert all("(wiped)" not in line for line in resumed), resumed
    assert took < 2, f"served again {took:.1f}s after the restart"
    assert node.api("GET", "/api/kv/k49").json() == 49


def test_the_lease_needs_a_live_consumer_process(node):
    """A consumer killed outright is noticed from its pid, not after the heartbeat
    timeout."""
    node.consumer.send_signal(signal.SIGKILL)
    node.consumer.wait(10)
    answer = node.api("GET", "/api/kv/anything")
    assert answer.status_code == 503 and answer.json()["code"] == "consumer_unavailable"
    assert node.api("GET", "/readyz").json()["consumer_alive"] is False
