"""`bin/kafka-local` brings up a real broker, is idempotent, and `stop` leaves no
process behind."""

import os
import subprocess
import sys

import pytest

from tests.brokers import ROOT, _free_cluster_ports, free_port

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
