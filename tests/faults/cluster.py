"""Store instances on the fault cluster: topics with replication factor 3 and
min.insync.replicas 2 that are never compacted during a run (the checker reads every
record), short session and produce timeouts, and optionally one instance in a network
namespace that can be partitioned."""

import os
import signal
import subprocess

from kvstore import log, topics
from tests.faults.netns import IsolatedInstance, Namespace
from tests.instances import Instance, isolated_settings
from tests.test_cluster import wait_stable

PARTITIONS = 6
SESSION_TIMEOUT_MS = 3000
# Compaction never runs on a record younger than this: the checker's replay needs them
# all.
NO_COMPACTION = str(10**12)


def fault_settings(bootstrap, **fields):
    defaults = dict(
        partitions=PARTITIONS,
        replication_factor=3,
        session_timeout_ms=SESSION_TIMEOUT_MS,
        produce_timeout=2.0,
        topic_configs=(
            ("min.insync.replicas", "2"),
            ("min.compaction.lag.ms", NO_COMPACTION),
        ),
    )
    return isolated_settings(bootstrap, **{**defaults, **fields})


class StoreCluster:
    """`count` instances of one store; with `isolate`, instance 0 runs in its own
    network namespace."""

    def __init__(self, brokers, directory, count=3, isolate=False, **fields):
        self.brokers = brokers
        self.settings = fault_settings(brokers.bootstrap, **fields)
        self.namespace = Namespace() if isolate else None
        self.nodes = []
        for i in range(count):
            path = directory / f"node{i}"
            if isolate and i == 0:
                self.nodes.append(IsolatedInstance(self.settings, path, self.namespace))
            else:
                self.nodes.append(Instance(self.settings, path))

    @property
    def isolated(self):
        return self.nodes[0] if self.namespace else None

    def start(self):
        with log.admin(self.settings) as admin:
            topics.ensure(admin, self.settings)
        if self.namespace:
            peers = [node.port for node in self.nodes[1:]]
            self.isolated.connect(self.brokers.ports + peers)
        for node in self.nodes:
            node.start_consumer()
            node.start_web()
        wait_stable(self.nodes)
        return self

    @property
    def urls(self):
        return [node.url for node in self.nodes]

    @property
    def client_urls(self):
        """Where clients send: the never-cut port for the isolated instance."""
        return [getattr(node, "client_url", node.url) for node in self.nodes]

    def wait_stable(self, timeout=90):
        wait_stable(self.nodes, timeout)

    def stop(self):
        for node in self.nodes:
            for process in (node.consumer, node.web):
                if process is not None and process.poll() is None:
                    # A paused process ignores SIGTERM until it runs again.
                    process.send_signal(signal.SIGCONT)
            node.stop()
        if self.namespace:
            self.isolated.bridge and self.isolated.bridge.stop()
            self.namespace.delete()


def processes(node):
    """Pids of an instance's consumer, gunicorn master and workers."""
    return [node.consumer.pid, node.web.pid] + workers(node)


def workers(node):
    children = subprocess.run(
        ["pgrep", "-P", str(node.web.pid)], capture_output=True, text=True
    ).stdout
    return [int(pid) for pid in children.split()]


def signal_all(pids, sig):
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
