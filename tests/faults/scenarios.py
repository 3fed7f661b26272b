"""The faults, each as a scenario: on a running store (tests/faults/cluster.py), the
checker's workload running, the fault injected and healed (marked in the history), then
the verdict. `short` timings are for CI, `full` ones for bench/faults.
"""

import dataclasses
import random
import signal
import time

import requests

from kvstore.checker.history import ACKED
from kvstore.checker.replay import parse_version
from kvstore.checker.runner import CheckRun
from tests.faults.cluster import (
    WEB_START_TIMEOUT,
    processes,
    signal_all,
    terminate,
    workers,
)


CLIENT_TIMEOUT = 4.0


@dataclasses.dataclass(frozen=True)
class Timing:
    warmup: float  # seconds of workload before the fault
    hold: float  # how long the fault lasts (between steps, for repeated faults)
    tail: float  # seconds of workload after the heal


@dataclasses.dataclass(frozen=True)
class Scenario:
    name: str
    # (cluster, check, timing, full) -> {figure: value, or a function that computes
    # it once the workload has stopped}
    inject: object
    short: Timing
    full: Timing
    isolate: bool = False  # instance 0 in a network namespace


@dataclasses.dataclass
class Outcome:
    name: str
    verdict: object  # report.Verdict
    figures: dict
    history_path: str | None


def pause(cluster, check, timing, full):
    """SIGSTOP one instance (consumer, gunicorn master and workers) past the session
    timeout, then SIGCONT."""
    target, witness = cluster.nodes[1], cluster.nodes[0]
    pids = processes(target)
    detail = f"SIGSTOP {target.url} for {timing.hold:.1f}s"
    with check.fault("pause", detail) as fault:
        signal_all(pids, signal.SIGSTOP)
        try:
            time.sleep(timing.hold)
            moved = _partitions_not_owned_by(witness, target.url)
        finally:
            signal_all(pids, signal.SIGCONT)

    def acked_for_moved():
        """Writes sent while it was paused that it acknowledged for partitions the
        group had given to others meanwhile (counted once every answer is in)."""
        return sum(
            op.kind == "write"
            and op.outcome == ACKED
            and op.served_by == target.url
            and fault.start <= op.start <= fault.end
            and (parse_version(op.etag) or (None,))[0] in moved
            for op in check.history.ops
        )

    return {"moved_partitions": sorted(moved), "acked_for_moved": acked_for_moved}


def consumer_pause(cluster, check, timing, full):
    """SIGSTOP one instance's consumer only (its gunicorn keeps answering from the
    cache) past the session timeout, then SIGCONT."""
    target = cluster.nodes[1]
    detail = f"SIGSTOP the consumer of {target.url} for {timing.hold:.1f}s"
    with check.fault("consumer-pause", detail):
        target.consumer.send_signal(signal.SIGSTOP)
        try:
            time.sleep(timing.hold)
        finally:
            target.consumer.send_signal(signal.SIGCONT)
    return {}


def _partitions_not_owned_by(witness, url):
    owners = requests.get(f"{witness.url}/api/cluster", timeout=10).json()["owners"]
    return {int(p) for p, owner in owners.items() if owner != url}


def partition(cluster, check, timing, full):
    """Cut instance 0 from the brokers and its peers; its own clients still reach
    it."""
    isolated = cluster.isolated
    detail = f"{isolated.url} cut from brokers and peers for {timing.hold:.0f}s"
    with check.fault("partition", detail):
        isolated.bridge.partition()
        try:
            time.sleep(timing.hold)
        finally:
            isolated.bridge.heal()
    return {}


def broker_kill(cluster, check, timing, full):
    """kill -9 the broker leading the most partitions; restart it after `hold`."""
    brokers = cluster.brokers
    node = brokers.busiest_leader(cluster.settings.topic("kv"))
    detail = f"kill -9 broker {node}, restarted after {timing.hold:.0f}s"
    with check.fault("broker-kill", detail):
        brokers.kill(node)
        try:
            time.sleep(timing.hold)
        finally:
            brokers.restart(node)
    return {"node": node}


def broker_stall(cluster, check, timing, full):
    """SIGSTOP the broker leading the most partitions for `hold`, then SIGCONT."""
    brokers = cluster.brokers
    node = brokers.busiest_leader(cluster.settings.topic("kv"))
    with check.fault("broker-stall", f"SIGSTOP broker {node} for {timing.hold:.0f}s"):
        brokers.pause(node)
        try:
            time.sleep(timing.hold)
        finally:
            brokers.resume(node)
    return {"node": node}


def rolling_restart(cluster, check, timing, full):
    """SIGTERM each instance's consumer and gunicorn in turn and start it again, the
    next one once the cluster is stable (the short version restarts one)."""
    for node in cluster.nodes if full else cluster.nodes[1:2]:
        with check.fault("rolling-restart", f"SIGTERM and restart {node.url}"):
            terminate(node)
            node.start_consumer()
            node.start_web(timeout=WEB_START_TIMEOUT)
        cluster.wait_stable()
        time.sleep(timing.hold)
    return {}


def consumer_kill(cluster, check, timing, full):
    """kill -9 one instance's consumer; start it again after `hold` (its gunicorn
    keeps running)."""
    target = cluster.nodes[1]
    detail = f"kill -9 the consumer of {target.url}, restarted after {timing.hold}s"
    with check.fault("consumer-kill", detail):
        target.consumer.send_signal(signal.SIGKILL)
        target.consumer.wait(10)
        time.sleep(timing.hold)
        target.start_consumer()
    return {}


def worker_kill(cluster, check, timing, full):
    """kill -9 a gunicorn worker of each instance in turn, `hold` apart (the master
    starts a new one)."""
    chosen = random.Random(7)
    for i in range(10 if full else 4):
        node = cluster.nodes[i % len(cluster.nodes)]
        pid = chosen.choice(workers(node))
        with check.fault("worker-kill", f"kill -9 worker {pid} of {node.url}"):
            signal_all([pid], signal.SIGKILL)
        time.sleep(timing.hold)
    return {}


SCENARIOS = {
    s.name: s
    for s in [
        # 4.5 s: past the session timeout (3 s) but within the web's heartbeat
        # timeout (5 s), so the paused instance wakes up still believing it owns its
        # partitions; pause-long outlasts both.
        Scenario("pause", pause, Timing(3, 4.5, 5), Timing(8, 4.5, 12)),
        Scenario("pause-long", pause, Timing(3, 10, 5), Timing(8, 10, 12)),
        Scenario(
            "consumer-pause", consumer_pause, Timing(3, 4.5, 5), Timing(8, 4.5, 12)
        ),
        Scenario(
            "partition", partition, Timing(3, 10, 6), Timing(8, 25, 15), isolate=True
        ),
        Scenario("broker-kill", broker_kill, Timing(3, 6, 6), Timing(8, 15, 15)),
        Scenario("broker-stall", broker_stall, Timing(3, 6, 6), Timing(8, 12, 15)),
        Scenario("rolling-restart", rolling_restart, Timing(3, 1, 3), Timing(8, 3, 10)),
        Scenario("consumer-kill", consumer_kill, Timing(3, 1, 5), Timing(8, 3, 12)),
        Scenario("worker-kill", worker_kill, Timing(3, 2, 3), Timing(8, 3, 10)),
    ]
}


def run(name, cluster, full=False, history_path=None, clients=9):
    """One run of scenario `name` on `cluster` (a started StoreCluster, made stable
    first); its Outcome, whose figures include how long each phase took (seconds)."""
    scenario = SCENARIOS[name]
    if scenario.isolate and cluster.isolated is None:
        raise ValueError(f"{name} needs a cluster with an isolated instance")
    timing = scenario.full if full else scenario.short
    phases = _Phases()
    cluster.wait_stable()
    phases.done("settle before")
    check = CheckRun(
        cluster.settings,
        cluster.urls,
        client_urls=cluster.client_urls,
        history_path=history_path,
        clients=clients,
        keys_per_partition=2,
        fresh_every=3.0,
        # Shorter than a pause or a partition: a client that waited on the faulty
        # instance gives up (an unknown outcome) and goes on through the others.
        timeout=CLIENT_TIMEOUT,
    ).start()
    try:
        time.sleep(timing.warmup)
        figures = scenario.inject(cluster, check, timing, full)
        time.sleep(timing.tail)
    finally:
        check.stop()
    figures = {k: v() if callable(v) else v for k, v in figures.items()}
    phases.done("workload")
    if full:
        # The next run starts with every broker back and in sync. (A restarted JVM
        # takes long on a busy machine: the short runs put broker-kill last instead.)
        cluster.brokers.wait_serving()
        cluster.brokers.wait_in_sync(cluster.settings.topic("kv"))
    figures["crashed"] = supervise(cluster)
    figures["stable_after"] = _stable(cluster)
    phases.done("settle after")
    verdict = check.verify()
    phases.done("verify")
    return Outcome(name, verdict, {**figures, "phases": phases.took}, history_path)


def supervise(cluster):
    """Start again every process of the store that exited by itself, as a process
    supervisor would; what had crashed, with the last line of its log."""
    crashed = []
    for node in cluster.nodes:
        if node.consumer.poll() is not None:
            crashed.append(
                f"consumer of {node.url} exited with {node.consumer.returncode}: "
                + _last_line(node.consumer_log)
            )
            node.start_consumer()
        if node.web.poll() is not None:
            crashed.append(
                f"gunicorn of {node.url} exited with {node.web.returncode}: "
                + _last_line(node.directory / "web.log")
            )
            node.start_web(timeout=WEB_START_TIMEOUT)
    return crashed


def _last_line(path):
    lines = [line for line in path.read_text(errors="replace").splitlines() if line]
    return lines[-1][:300] if lines else ""


def _stable(cluster):
    """Whether every instance is ready again and all agree on the owners."""
    try:
        cluster.wait_stable()
    except TimeoutError:
        return False
    return True


class _Phases:
    def __init__(self):
        self.took, self._last = {}, time.monotonic()

    def done(self, phase):
        now = time.monotonic()
        self.took[phase] = round(now - self._last, 1)
        self._last = now
