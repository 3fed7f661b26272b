"""A network namespace for one store instance, bridged to the host's loopback by
`tests.faults.proxy`, so that a test can partition it from the brokers and its peers
while its own clients still reach it."""

import subprocess
import sys
import uuid

from tests.brokers import ROOT, free_port
from tests.instances import Instance


class Namespace:
    """`ip netns add` with its loopback up; `delete()` removes it."""

    def __init__(self):
        self.name = f"kvchk-{uuid.uuid4().hex[:8]}"
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        self.run("ip", "link", "set", "lo", "up")

    def command(self, *argv):
        return ["ip", "netns", "exec", self.name, *argv]

    def run(self, *argv):
        subprocess.run(self.command(*argv), check=True, capture_output=True)

    def delete(self):
        subprocess.run(["ip", "netns", "delete", self.name], capture_output=True)


class Bridge:
    """The proxy process: brokers and peers into the namespace, the isolated instance
    out of it (both cut by `partition()`), and a client port that is never cut."""

    def __init__(self, namespace, inward_ports, instance_port):
        self.client_port = free_port()
        routes = [f"in:{port}" for port in inward_ports]
        routes += [f"out:{instance_port}", f"client:{self.client_port}:{instance_port}"]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.faults.proxy", namespace.name, *routes],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._expect("ready")

    def _expect(self, line):
        got = self.process.stdout.readline().strip()
        if got != line:
            raise RuntimeError(f"the bridge said {got!r}, not {line!r}")

    def _command(self, command):
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        self._expect(f"ok {command}")

    def partition(self):
        self._command("partition")

    def heal(self):
        self._command("heal")

    def stop(self):
        if self.process.poll() is None:
            self.process.stdin.close()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


class IsolatedInstance(Instance):
    """An instance whose consumer and gunicorn run inside `namespace`; its advertised
    URL is the bridged host port, `client_url` the never-cut one."""

    def __init__(self, settings, directory, namespace, workers=2):
        super().__init__(settings, directory, workers)
        self.namespace = namespace
        self.bridge = None

    def connect(self, inward_ports):
        """Start the bridge (before the instance: its health check goes through it)."""
        self.bridge = Bridge(self.namespace, inward_ports, self.port)
        self.client_url = f"http://127.0.0.1:{self.bridge.client_port}"

    def wrap(self, argv):
        return self.namespace.command(*argv)
