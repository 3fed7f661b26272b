"""The cluster-wide status against real instances: `manage.py kvstore_status` from
Kafka (only the bootstrap servers and the group) and through `--url` of any instance,
and `/api/cluster/status`; with one instance killed, the partitions it held are named
as having no ready owner (exit 1)."""

import json
import subprocess
import sys

from kvstore.partitioner import partition_for
from tests.brokers import ROOT
from tests.instances import environment, isolated_settings
from tests.test_cluster import make_cluster, owner_of


def status(settings, *args, env=None):
    """Run kvstore_status with only what an operator would set (no cache path)."""
    variables = environment(settings, **(env or {}))
    variables.pop("KVSTORE_CACHE_PATH")
    variables.pop("KVSTORE_ADVERTISED_URL")
    return subprocess.run(
        [sys.executable, "manage.py", "kvstore_status", *args],
        cwd=ROOT,
        env=variables,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_from_kafka_it_prints_both_instances_and_every_partition(two_instances):
    done = status(two_instances[0].settings)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "members and owners from Kafka" in out and "Stable" in out
    lines = out.splitlines()
    for node in two_instances:
        member = next(line for line in lines if line.startswith(node.url))
        assert "alive" in member and "held" in member
    partitions = [line.split() for line in lines if line[:9].strip().isdigit()]
    assert sorted(int(row[0]) for row in partitions) == [0, 1, 2, 3]
    assert {row[1] for row in partitions} == {n.url for n in two_instances}
    assert all(row[2] == "ready" for row in partitions)


def test_through_any_instance_with_url(two_instances):
    for node in two_instances:
        done = status(node.settings, "--url", node.url, "--json")
        assert done.returncode == 0, done.stderr
        found = json.loads(done.stdout)
        assert found["source"] == "kafka" and found["unready"] == []
        assert {m["url"] for m in found["members"]} == {n.url for n in two_instances}
        assert all(m["answered"] and m["consumer_alive"] for m in found["members"])


def test_the_status_endpoint_joins_kafka_and_every_member(two_instances):
    node = two_instances[0]
    key = "status-key"
    owner = next(n for n in two_instances if n.url == owner_of(node, key))
    assert owner.api("PUT", f"/api/kv/{key}", json=1).status_code in (200, 201)
    found = node.api("GET", "/api/cluster/status").json()
    assert found["generation"] == node.api("GET", "/api/cluster").json()["generation"]
    assert sorted(found["namespaces"]) == ["kv", "users"]
    row = found["partitions"][partition_for(key, 4)]
    owner = row["owner"]
    assert row["state"] == "ready" and row["reason"] is None
    kv = row["namespaces"]["kv"]
    assert kv["from"] == "owner" and kv["applied"] == kv["end"] >= 1
    assert kv["lag"] == 0
    holders = {m["url"]: m["partitions"] for m in found["members"]}
    assert row["partition"] in holders[owner]
    assert sorted(sum(holders.values(), [])) == [0, 1, 2, 3]


def test_a_killed_instance_leaves_its_partitions_without_a_ready_owner(
    kafka_bootstrap, tmp_path
):
    # A long session: Kafka keeps the dead member (and its partitions) for a while.
    settings = isolated_settings(
        kafka_bootstrap, partitions=4, session_timeout_ms=30000
    )
    nodes = make_cluster(settings, tmp_path, 2)
    try:
        survivor, victim = nodes
        held = node_partitions(survivor, victim.url)
        assert held, "both instances hold partitions"
        victim.kill()
        done = status(settings)
        assert done.returncode == 1, done.stdout
        named = ", ".join(map(str, held))
        assert f"partitions without a ready owner: {named}" in done.stderr
        assert victim.url in done.stdout and "unreachable" in done.stdout
        through = status(settings, "--url", survivor.url, "--json")
        assert through.returncode == 1
        found = json.loads(through.stdout)
        assert found["unready"] == held
        states = {row["partition"]: row["state"] for row in found["partitions"]}
        assert {p for p, state in states.items() if state == "unreachable"} == set(held)
        committed = found["partitions"][held[0]]["namespaces"]["kv"]
        assert committed["from"] == "committed" and committed["end"] is not None
    finally:
        for node in nodes:
            node.stop()


def node_partitions(node, url):
    owners = node.api("GET", "/api/cluster").json()["owners"]
    return sorted(int(p) for p, owner in owners.items() if owner == url)
