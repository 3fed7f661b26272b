"""A 3-node Kafka cluster of the fault tests' own (bin/kafka-local, free ports,
throw-away data), whose nodes can be killed, stalled (SIGSTOP) and restarted.

Until `bin/kafka-local` has per-node commands, a node is found by the pid file
kafka-local writes and restarted with the command line it was started with.
"""

import os
import shutil
import signal
import subprocess
import tempfile
import time

from kafka import KafkaAdminClient

from tests.brokers import ROOT, _free_cluster_ports
from tests.instances import wait_for

SCRIPT = str(ROOT / "bin" / "kafka-local")


class BrokerCluster:
    def __init__(self, nodes=3):
        self.nodes = nodes
        self.port = _free_cluster_ports(nodes)
        self.data = tempfile.mkdtemp(prefix="kvstore-kafka-")
        self.env = dict(os.environ, KAFKA_PORT=str(self.port), KAFKA_DATA_DIR=self.data)
        self.bootstrap = ",".join(f"127.0.0.1:{self.port + i}" for i in range(nodes))
        self.ports = [self.port + i for i in range(nodes)]
        self._commands = {}
        self._restarted = {}  # node -> Popen of a node this object started again

    def start(self):
        try:
            return self._start()
        except BaseException:
            self.stop()  # the nodes run in sessions of their own: stop them here
            raise

    def _start(self):
        started = subprocess.run(
            [SCRIPT, "start", "--nodes", str(self.nodes)],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if started.returncode != 0:
            raise RuntimeError(f"bin/kafka-local start failed:\n{started.stderr}")
        for node in range(1, self.nodes + 1):
            with open(f"/proc/{self.pid(node)}/cmdline", "rb") as cmdline:
                self._commands[node] = cmdline.read().split(b"\0")[:-1]
        return self

    def stop(self):
        """Kill every node (the data is thrown away: no clean shutdown needed, and a
        node still starting after a restart would keep a clean stop waiting)."""
        for node in range(1, self.nodes + 1):
            try:
                os.kill(self.pid(node), signal.SIGKILL)
            except (OSError, ValueError):
                pass  # never started, or already gone
        for process in self._restarted.values():
            process.wait(30)  # our child: reaped here, or kafka-local sees it alive
        subprocess.run([SCRIPT, "stop"], env=self.env, capture_output=True, timeout=120)
        shutil.rmtree(self.data, ignore_errors=True)

    def _dir(self, node):
        return os.path.join(self.data, f"node-{node}")

    def pid(self, node):
        with open(os.path.join(self._dir(node), "pid")) as pid_file:
            return int(pid_file.read())

    def kill(self, node):
        """SIGKILL the node's JVM, as a machine crash would; wait until it is gone."""
        pid = self.pid(node)
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not _alive(pid), 10, f"broker {node} to die")

    def pause(self, node):
        os.kill(self.pid(node), signal.SIGSTOP)

    def resume(self, node):
        os.kill(self.pid(node), signal.SIGCONT)

    def restart(self, node):
        """Start a killed node again with its own command line (as kafka-local did:
        in its own session, logging to its kafka.log)."""
        with open(os.path.join(self._dir(node), "kafka.log"), "ab") as log:
            process = subprocess.Popen(
                self._commands[node],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=self.env,
            )
        with open(os.path.join(self._dir(node), "pid"), "w") as pid_file:
            pid_file.write(str(process.pid))
        self._restarted[node] = process
        return process.pid

    def wait_serving(self, timeout=90):
        """Until every node is registered and answers."""

        def answers():
            probe = subprocess.run(
                [
                    "python3",
                    str(ROOT / "bin" / "kafka_metadata.py"),
                    f"127.0.0.1:{self.port}",
                    "--brokers",
                    str(self.nodes),
                ],
                capture_output=True,
            )
            return probe.returncode == 0

        wait_for(answers, timeout, "every broker to serve", interval=0.5)

    def wait_in_sync(self, topic, timeout=90):
        """Until every partition of `topic` has all its replicas in sync."""

        def in_sync():
            partitions = self.describe(topic)
            return partitions and all(
                len(p["isr_nodes"]) == len(p["replica_nodes"]) for p in partitions
            )

        wait_for(in_sync, timeout, f"{topic} to be fully in sync", interval=0.5)

    def describe(self, topic):
        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap.split(","))
        try:
            (described,) = admin.describe_topics([topic])
            return described["partitions"]
        finally:
            admin.close()

    def busiest_leader(self, topic):
        """The node that leads the most partitions of `topic` (the lowest on a tie)."""
        leaders = [p["leader_id"] for p in self.describe(topic)]
        return max(sorted(set(leaders)), key=leaders.count)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie nobody has reaped yet counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_until(moment):
    """Sleep until time.monotonic() reaches `moment`."""
    time.sleep(max(0.0, moment - time.monotonic()))
