"""Store instances on the fault cluster: topics with replication factor 3 and
min.insync.replicas 2 that are never compacted during a run (the checker reads every
record), short session and produce timeouts, and optionally one instance in a network
namespace that can be partitioned."""

import concurrent.futures
import os
import signal
import subprocess
import time

from kvstore import log, topics
from kvstore.errors import TopicMisconfigured
from tests.faults.netns import IsolatedInstance, Namespace
from tests.instances import Instance, isolated_settings
from tests.test_cluster import wait_stable

PARTITIONS = 6
SESSION_TIMEOUT_MS = 3000
# A gunicorn worker boots Django; on a busy 2-core machine that can take half a minute.
WEB_START_TIMEOUT = 120
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
        try:
            return self._start()
        except BaseException:
            self.stop()  # an interrupted start leaves no process or namespace behind
            raise

    def _start(self):
        self._ensure_topics()
        if self.namespace:
            peers = [node.port for node in self.nodes[1:]]
            self.isolated.connect(self.brokers.ports + peers)
        for node in self.nodes:
            node.start_consumer()
        # In parallel: on a busy machine each gunicorn takes a while to boot Django.
        _each(self.nodes, lambda node: node.start_web(timeout=WEB_START_TIMEOUT))
        wait_stable(self.nodes)
        return self

    def _ensure_topics(self, tries=20):
        """topics.ensure, again while it fails: right after creating a topic on a
        3-node cluster, the broker that answers describe_configs may not know the
        topic yet (an empty cleanup.policy), which ensure takes for a misconfigured
        topic."""
        for attempt in range(tries):
            try:
                with log.admin(self.settings) as admin:
                    return topics.ensure(admin, self.settings)
            except TopicMisconfigured:
                if attempt == tries - 1:
                    raise
                time.sleep(0.5)

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
        _each(self.nodes, _stop)
        if self.namespace:
            if self.isolated.bridge is not None:
                self.isolated.bridge.stop()
            self.namespace.delete()


def _stop(node):
    for process in (node.consumer, node.web):
        if process is not None and process.poll() is None:
            # A paused process ignores SIGTERM until it runs again.
            process.send_signal(signal.SIGCONT)
    node.stop()


def terminate(node, timeout=60):
    """SIGTERM the consumer and gunicorn at once, as `bin/instance` and process
    managers stop an instance, and wait for both."""
    running = [
        p for p in (node.consumer, node.web) if p is not None and p.poll() is None
    ]
    for process in running:
        process.send_signal(signal.SIGTERM)
    for process in running:
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def _each(nodes, action):
    """`action(node)` for every node at once; the first error, if any, raised."""
    with concurrent.futures.ThreadPoolExecutor(len(nodes)) as pool:
        for done in [pool.submit(action, node) for node in nodes]:
            done.result()


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
