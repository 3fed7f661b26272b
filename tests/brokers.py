"""A real Kafka broker for the test session: the one named by KAFKA_BOOTSTRAP_SERVERS,
else a testcontainers Apache Kafka when a Docker daemon answers, else the project's own
`bin/kafka-local`.
"""

import contextlib
import os
import socket
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KAFKA_IMAGE = "apache/kafka:4.1.1"


def free_port(count=1, step=1):
    """A port p such that p, p+step, … p+(count-1)*step are all free on loopback."""
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port + (count - 1) * step < 65000 and all(
            _is_free(port + i * step) for i in range(count)
        ):
            return port
    raise RuntimeError("no free port found")


def _is_free(port):
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _docker_answers():
    try:
        import docker

        client = docker.from_env(timeout=3)
        client.ping()
        return True
    except Exception:  # no client library, no socket, no daemon: no Docker here
        return False


@contextlib.contextmanager
def kafka_local(nodes=1):
    """A fresh broker from `bin/kafka-local` on free ports with throw-away data; stopped
    afterwards."""
    port = free_port(count=2, step=100) if nodes == 1 else _free_cluster_ports(nodes)
    with tempfile.TemporaryDirectory(prefix="kvstore-kafka-") as data:
        env = dict(os.environ, KAFKA_PORT=str(port), KAFKA_DATA_DIR=data)
        script = str(ROOT / "bin" / "kafka-local")
        started = subprocess.run(
            [script, "start", "--nodes", str(nodes)],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if started.returncode != 0:
            subprocess.run([script, "stop"], env=env, capture_output=True)
            raise RuntimeError(f"bin/kafka-local start failed:\n{started.stderr}")
        try:
            yield started.stdout.strip()
        finally:
            subprocess.run([script, "stop"], env=env, capture_output=True, timeout=120)


def _free_cluster_ports(nodes):
    for _ in range(50):
        port = free_port()
        if all(_is_free(port + i) and _is_free(port + 100 + i) for i in range(nodes)):
            return port
    raise RuntimeError("no free ports for a cluster")


@contextlib.contextmanager
def testcontainers_kafka():
    """Apache Kafka's official image in KRaft mode, advertised on a fixed free host
    port."""
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs

    port = free_port()
    container = (
        DockerContainer(KAFKA_IMAGE)
        .with_bind_ports(9092, port)
        .with_env("KAFKA_NODE_ID", "1")
        .with_env("KAFKA_PROCESS_ROLES", "broker,controller")
        .with_env("KAFKA_LISTENERS", "PLAINTEXT://:9092,CONTROLLER://:9093")
        .with_env("KAFKA_ADVERTISED_LISTENERS", f"PLAINTEXT://127.0.0.1:{port}")
        .with_env("KAFKA_CONTROLLER_LISTENER_NAMES", "CONTROLLER")
        .with_env(
            "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP",
            "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        )
        .with_env("KAFKA_CONTROLLER_QUORUM_VOTERS", "1@localhost:9093")
        .with_env("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "1")
        .with_env("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1")
        .with_env("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1")
        .with_env("KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS", "0")
        .with_env("KAFKA_GROUP_MIN_SESSION_TIMEOUT_MS", "1000")
        .with_env("KAFKA_LOG_CLEANER_BACKOFF_MS", "1000")
        .with_env("KAFKA_AUTO_CREATE_TOPICS_ENABLE", "false")
    )
    with container:
        wait_for_logs(container, "Kafka Server started", timeout=120)
        yield f"127.0.0.1:{port}"


@contextlib.contextmanager
def session_broker():
    """The session's broker; yields its bootstrap servers and how it was obtained."""
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield os.environ["KAFKA_BOOTSTRAP_SERVERS"], "KAFKA_BOOTSTRAP_SERVERS"
    elif _docker_answers():
        with testcontainers_kafka() as bootstrap:
            yield bootstrap, "testcontainers"
    else:
        with kafka_local() as bootstrap:
            yield bootstrap, "bin/kafka-local"
