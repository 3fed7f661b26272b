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


# Topic settings for fault tests on a 3-node cluster: every record on all three brokers,
# and acks=all needs two of them, so one broker may fail without losing a write.
REPLICATED = dict(replication_factor=3, topic_configs=(("min.insync.replicas", "2"),))


class LocalKafka:
    """A cluster from `bin/kafka-local` on free ports with throw-away data, its client
    settings, and fault injection on single nodes (`kill_node(2)`, `heal()`)."""

    def __init__(self, nodes=1, security=None):
        self.nodes, self.security_name = nodes, security
        self.port = _free_cluster_ports(nodes, listeners=3 if security else 2)
        self._data = tempfile.TemporaryDirectory(prefix="kvstore-kafka-")
        self.data_dir = Path(self._data.name)
        self.env = dict(
            os.environ,
            KAFKA_PORT=str(self.port),
            KAFKA_DATA_DIR=self._data.name,
            # A JVM starts slowly on a machine shared by many test runs; a broker that
            # is late is not a failure of the code under test.
            KAFKA_START_TIMEOUT=os.environ.get("KAFKA_START_TIMEOUT", "240"),
        )
        self.bootstrap = None
        self.client_env = (
            {}
        )  # KAFKA_* settings a client needs, from `bin/kafka-local env`

    def run(self, *args, timeout=300):
        return subprocess.run(
            [str(ROOT / "bin" / "kafka-local"), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def start(self):
        args = ["start", "--nodes", str(self.nodes)]
        if self.security_name:
            args += ["--security", self.security_name]
        started = self.run(*args)
        if started.returncode != 0:
            self.stop()
            raise RuntimeError(f"bin/kafka-local start failed:\n{started.stderr}")
        self.bootstrap = started.stdout.strip()
        printed = self.run("env").stdout.splitlines()
        self.client_env = dict(line.split("=", 1) for line in printed if "=" in line)
        return self

    @property
    def security(self):
        """The KafkaSecurity a store needs to use this cluster."""
        from kvstore import conf

        return conf.from_environ(self.client_env).security

    def node(self, action, node):
        """`stop`, `kill`, `pause` or `resume` one node; returns the completed run."""
        done = self.run(f"{action}-node", str(node), timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"bin/kafka-local {action}-node {node}: {done.stderr}")
        return done

    def heal(self):
        """Resume paused nodes and restart stopped ones; wait until all serve."""
        for node in range(1, self.nodes + 1):
            self.run("resume-node", str(node), timeout=60)  # fails on a running one
        self.start()

    def stop(self):
        self.run("stop", timeout=120)
        self._data.cleanup()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


@contextlib.contextmanager
def kafka_local(nodes=1):
    """A fresh broker from `bin/kafka-local` on free ports with throw-away data; stopped
    afterwards."""
    with LocalKafka(nodes) as cluster:
        yield cluster.bootstrap


def _free_cluster_ports(nodes, listeners=2):
    """A base port p such that p+100*k+i is free for each listener k and node i."""
    for _ in range(50):
        port = free_port()
        if port + 100 * (listeners - 1) + nodes < 65000 and all(
            _is_free(port + 100 * k + i) for k in range(listeners) for i in range(nodes)
        ):
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
