"""The consistency checker against real faults, short versions (bench/faults runs the
full matrix, longer and several times): a 3-node Kafka cluster (replication factor 3,
min.insync.replicas 2), three store instances, concurrent clients through all of them,
one fault per test; the checker must find no violation, no store process may crash,
and the store must serve again afterwards.
"""

import json
import os
import subprocess

import pytest

from kvstore.checker import report
from tests.faults import scenarios
from tests.faults.brokers import BrokerCluster
from tests.faults.cluster import StoreCluster
from tests.instances import PYTHON, ROOT, environment

# FAULT_TESTS=none skips every fault test (a quick local `bin/test`).
FAULT_TESTS = os.environ.get("FAULT_TESTS", "all")
pytestmark = [
    pytest.mark.faults,
    pytest.mark.skipif(FAULT_TESTS == "none", reason="FAULT_TESTS=none"),
]
# Writes must come back by themselves "within seconds" of a broker's return (they did
# not for minutes once). How soon is Kafka's failover more than the store's: a dead or
# stalled broker is fenced after broker.session.timeout.ms (4 s in bin/kafka-local),
# and clients find the new leaders and group coordinator after their own timeouts;
# 3 to 6 s after the heal on this machine (docs/FAULTS.md).
WRITES_BACK_WITHIN = 10
CONSUMER_BACK_WITHIN = 6

needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="network namespaces need root"
)


@pytest.fixture(scope="module")
def fault_cluster(tmp_path_factory):
    """One 3-node Kafka cluster and one store of three instances for every fault
    (each run has keys of its own); instance 0 in a network namespace when root."""
    brokers = BrokerCluster(nodes=3).start()
    try:
        directory = tmp_path_factory.mktemp("faults")
        store = StoreCluster(brokers, directory, isolate=os.geteuid() == 0)
        try:
            yield store.start()
        finally:
            store.stop()
    finally:
        brokers.stop()


def run(name, cluster, tmp_path):
    outcome = scenarios.run(name, cluster, history_path=str(tmp_path / f"{name}.jsonl"))
    print(explain(outcome))
    return outcome


def assert_clean(outcome):
    """No violation, no process of the store crashed, and the store served again."""
    assert outcome.verdict.ok, explain(outcome)
    assert outcome.figures["crashed"] == [], explain(outcome)
    assert outcome.figures["stable_after"], explain(outcome)


def explain(outcome):
    return (
        f"{outcome.name}: {report.render(outcome.verdict)}\n"
        f"figures: {outcome.figures}\nhistory: {outcome.history_path}"
    )


def test_kvstore_check_on_a_healthy_cluster(fault_cluster, tmp_path):
    """The management command against a deployment without faults: a verdict as JSON,
    exit 0 exactly when it found no violation, and a history that analyses the same
    offline."""
    history = tmp_path / "healthy.jsonl"
    command = ["kvstore_check", "--seconds", "4", "--json", "--history", str(history)]
    for url in fault_cluster.client_urls:
        command += ["--url", url]
    checked = manage(fault_cluster, command)
    verdict = json.loads(checked.stdout)
    assert checked.returncode == (0 if verdict["ok"] else 1), checked.stderr
    assert verdict["ops"] > 10 and verdict["faults"] == [], checked.stdout
    again = manage(
        fault_cluster, ["kvstore_check", "--analyze", str(history), "--json"]
    )
    assert json.loads(again.stdout) == verdict
    assert verdict["ok"], f"violations without faults: {verdict['violations']}"


def manage(cluster, arguments):
    return subprocess.run(
        [PYTHON, "manage.py", *arguments],
        cwd=ROOT,
        env=environment(cluster.settings),
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_an_instance_paused_past_the_session_timeout(fault_cluster, tmp_path):
    outcome = run("pause", fault_cluster, tmp_path)
    assert_clean(outcome)
    assert outcome.figures["acked_for_moved"] == 0, explain(outcome)


def test_a_consumer_paused_past_the_session_timeout(fault_cluster, tmp_path):
    outcome = run("consumer-pause", fault_cluster, tmp_path)
    assert_clean(outcome)


def test_a_broker_stalled(fault_cluster, tmp_path):
    outcome = run("broker-stall", fault_cluster, tmp_path)
    assert_clean(outcome)
    (fault,) = outcome.verdict.faults
    assert fault.write_recovery_s <= WRITES_BACK_WITHIN, explain(outcome)


def test_a_rolling_restart(fault_cluster, tmp_path):
    outcome = run("rolling-restart", fault_cluster, tmp_path)
    assert_clean(outcome)


def test_a_consumer_killed_and_restarted(fault_cluster, tmp_path):
    outcome = run("consumer-kill", fault_cluster, tmp_path)
    assert_clean(outcome)
    (fault,) = outcome.verdict.faults
    # The restarted consumer takes its old place in the group at once (static
    # membership) and restores its partitions from the cache: 2.3 to 3.9 s after the
    # restart on this machine (docs/FAULTS.md), more under a loaded CI runner.
    assert fault.recovery_s <= CONSUMER_BACK_WITHIN, explain(outcome)


def test_gunicorn_workers_killed(fault_cluster, tmp_path):
    outcome = run("worker-kill", fault_cluster, tmp_path)
    assert_clean(outcome)


# Late: the killed broker is restarted but not waited for (see scenarios.run).
def test_a_broker_killed(fault_cluster, tmp_path):
    outcome = run("broker-kill", fault_cluster, tmp_path)
    assert_clean(outcome)
    (fault,) = outcome.verdict.faults
    assert fault.write_recovery_s <= WRITES_BACK_WITHIN, explain(outcome)


@needs_root
def test_an_instance_partitioned_from_brokers_and_peers(fault_cluster, tmp_path):
    outcome = run("partition", fault_cluster, tmp_path)
    assert_clean(outcome)
