"""`bin/kafka-local` brings up a real broker, is idempotent, `stop` leaves no process
behind, and single nodes of a cluster can be stopped, killed, paused, resumed and
brought back."""

import os
import subprocess
import sys

import pytest

from kvstore import log, topics
from tests import rawlog
from tests.brokers import REPLICATED, ROOT, _free_cluster_ports, free_port
from tests.instances import isolated_settings

SCRIPT = str(ROOT / "bin" / "kafka-local")


def run(env, *args, timeout=180):
    return subprocess.run(
        [SCRIPT, *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def broker_pids(data_dir):
    """PIDs of running JVMs whose command line names this data directory."""
    found = subprocess.run(
        ["pgrep", "-f", f"kafka.Kafka {data_dir}"], capture_output=True, text=True
    )
    return found.stdout.split()


def metadata(address, brokers):
    probe = [
        sys.executable,
        str(ROOT / "bin" / "kafka_metadata.py"),
        address,
        "--brokers",
        str(brokers),
    ]
    return subprocess.run(probe, capture_output=True, text=True)


@pytest.fixture
def local_env(tmp_path):
    """The environment for a broker of our own on `port`, with its data in the test's
    tmp_path."""
    return lambda port: dict(
        os.environ, KAFKA_PORT=str(port), KAFKA_DATA_DIR=str(tmp_path / "data")
    )


def test_start_status_stop(local_env, tmp_path):
    port = free_port(count=2, step=100)
    env = local_env(port)
    try:
        started = run(env, "start")
        assert started.returncode == 0, started.stderr
        assert started.stdout.strip() == f"127.0.0.1:{port}"
        assert metadata(f"127.0.0.1:{port}", 1).stdout.startswith("brokers=1")
        assert run(env, "status").returncode == 0

        again = run(env, "start")
        assert (
            again.returncode == 0 and again.stdout.strip() == f"127.0.0.1:{port}"
        ), "start is idempotent"
        assert (
            len(broker_pids(tmp_path / "data")) == 1
        ), "a second start does not launch a second broker"
    finally:
        stopped = run(env, "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert broker_pids(tmp_path / "data") == []
    assert run(env, "status").returncode == 1
    assert metadata(f"127.0.0.1:{port}", 1).returncode == 1


def test_three_node_cluster(local_env, tmp_path):
    port = _free_cluster_ports(3)
    env = local_env(port)
    try:
        started = run(env, "start", "--nodes", "3")
        assert started.returncode == 0, started.stderr
        assert started.stdout.strip() == ",".join(
            f"127.0.0.1:{port + i}" for i in range(3)
        )
        assert metadata(f"127.0.0.1:{port + 2}", 3).stdout.startswith("brokers=3")
        assert len(broker_pids(tmp_path / "data")) == 3
    finally:
        stopped = run(env, "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert broker_pids(tmp_path / "data") == []


def test_refuses_unknown_options(local_env):
    done = run(local_env(free_port()), "start", "--bogus")
    assert done.returncode != 0
    assert "unknown option for start: --bogus" in done.stderr


@pytest.fixture
def cluster(three_brokers):
    """The session's 3-node cluster (conftest); whole again after each test."""
    return three_brokers


def node_pid(cluster, node):
    return int((cluster.data_dir / f"node-{node}" / "pid").read_text())


def process_state(pid):
    """The kernel's one-letter state of a process (R, S, T…), or None once gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return None


def serves(cluster, node, brokers=3):
    port = cluster.port + node - 1
    return metadata(f"127.0.0.1:{port}", brokers).returncode == 0


@pytest.mark.cluster
def test_a_killed_node_comes_back_with_start(cluster):
    before = {node: node_pid(cluster, node) for node in (1, 2, 3)}
    cluster.node("kill", 2)
    assert process_state(before[2]) in (None, "Z"), "SIGKILL ended the JVM"
    status = cluster.run("status")
    assert status.returncode == 1, "a missing node is not a healthy cluster"
    assert "degraded" in status.stdout
    assert f"node 2  127.0.0.1:{cluster.port + 1}  pid -" in status.stdout
    assert not serves(cluster, 2, brokers=1)

    healed = cluster.run("start", "--nodes", "3")
    assert healed.returncode == 0, healed.stderr
    assert healed.stdout.strip() == cluster.bootstrap
    assert "node(s) 2 of the 3-node" in healed.stderr
    after = {node: node_pid(cluster, node) for node in (1, 2, 3)}
    assert after[1] == before[1] and after[3] == before[3], "only node 2 restarted"
    assert after[2] != before[2] and process_state(after[2]) in ("R", "S")
    assert serves(cluster, 2), "the restarted node answers metadata listing all 3"
    assert cluster.run("status").returncode == 0


@pytest.mark.cluster
def test_pause_and_resume_one_node(cluster):
    pid = node_pid(cluster, 3)
    cluster.node("pause", 3)
    try:
        assert process_state(pid) == "T", "SIGSTOP stops the JVM"
        status = cluster.run("status")
        assert status.returncode == 1
        assert f"pid {pid:<8} paused" in status.stdout
        refused = cluster.run("start")
        assert refused.returncode == 1
        assert (
            "node 3 is paused" in refused.stderr and "resume-node 3" in refused.stderr
        )
        assert not serves(cluster, 3, brokers=1), "a stopped JVM answers nothing"
    finally:
        cluster.node("resume", 3)
    assert process_state(pid) in ("R", "S"), "SIGCONT lets it run again"
    assert node_pid(cluster, 3) == pid, "the same JVM, not a new one"
    assert serves(cluster, 3, brokers=1)


@pytest.mark.cluster
def test_stop_node_then_plain_start_restores_the_cluster(cluster):
    pid = node_pid(cluster, 1)
    stopped = cluster.node("stop", 1)
    assert "node 1" in stopped.stderr and "stopped" in stopped.stderr
    assert process_state(pid) in (None, "Z")
    assert serves(cluster, 2, brokers=2), "the other two keep serving"
    # Without --nodes: the data directory knows it holds a 3-node cluster.
    healed = cluster.run("start")
    assert healed.returncode == 0, healed.stderr
    assert serves(cluster, 1)
    assert cluster.run("status").returncode == 0


@pytest.mark.cluster
def test_node_commands_refuse_what_they_cannot_do(cluster):
    unknown = cluster.run("kill-node", "4")
    assert unknown.returncode == 1 and "name a node from 1 to 3" in unknown.stderr
    assert cluster.run("pause-node").returncode == 1
    cluster.node("kill", 3)
    try:
        again = cluster.run("kill-node", "3")
        assert again.returncode == 1 and "node 3 is not running" in again.stderr
        wrong = cluster.run("start", "--nodes", "1")
        assert wrong.returncode == 1 and "holds a 3-node cluster" in wrong.stderr
    finally:
        assert cluster.run("start").returncode == 0


@pytest.mark.cluster
def test_replicated_topics_take_writes_with_one_broker_down(cluster):
    settings = isolated_settings(cluster.bootstrap, **REPLICATED)
    topic = settings.topic("kv")
    with log.admin(settings) as admin:
        state = topics.ensure(admin, settings)[topic]
    assert state.replication_factor == 3
    assert state.configs["min.insync.replicas"] == "2"
    cluster.node("kill", 3)
    bootstrap = [f"127.0.0.1:{cluster.port}", f"127.0.0.1:{cluster.port + 1}"]
    written = rawlog.produce(bootstrap, topic, [("k", "1")], partition=0)
    assert written == [(0, 0)], "acks=all needs two in-sync replicas, and has them"
