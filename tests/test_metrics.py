"""/metrics on two real instances (gunicorn with two workers each, a consumer
process each): counters and histograms that move under load, every worker counted
(prometheus_client's multiprocess mode), the consumer's figures per partition, a dead
worker's live gauges dropped and the directory emptied when gunicorn starts."""

import os
import signal
import subprocess

import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.instances import wait_for
from tests.test_cluster import owner_of


def scrape(node):
    """{(sample name, frozenset of labels): value} of one scrape."""
    answer = node.api("GET", "/metrics")
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def value(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_a_put_moves_the_request_counter_and_the_write_histograms(two_instances):
    key = "metered"
    owner = next(n for n in two_instances if n.url == owner_of(two_instances[0], key))
    assert owner.api("PUT", f"/api/kv/{key}", json=0).status_code in (200, 201)
    before = scrape(owner)
    assert owner.api("PUT", f"/api/kv/{key}", json=1).status_code == 200
    after = scrape(owner)
    put = dict(namespace="kv", method="PUT", status="200")
    assert value(after, "kvstore_requests_total", **put) == (
        value(before, "kvstore_requests_total", **put) + 1
    )
    for histogram in ("produce_seconds", "apply_wait_seconds", "seconds"):
        name = f"kvstore_write_{histogram}"
        count = f"{name}_count"
        assert value(after, count, namespace="kv") == (
            value(before, count, namespace="kv") + 1
        )
        assert value(after, f"{name}_sum", namespace="kv") > value(
            before, f"{name}_sum", namespace="kv"
        )
        inf = value(after, f"{name}_bucket", namespace="kv", le="+Inf")
        assert inf == value(after, count, namespace="kv")


def test_redirects_and_refusals_are_counted_by_code(two_instances):
    key = "redirected"
    other = next(n for n in two_instances if n.url != owner_of(two_instances[0], key))
    before = scrape(other)
    for _ in range(3):
        assert other.api("GET", f"/api/kv/{key}").status_code == 307
    after = scrape(other)
    labels = dict(status="307", code="not_owner")
    assert value(after, "kvstore_answer_codes_total", **labels) == (
        value(before, "kvstore_answer_codes_total", **labels) + 3
    )


def test_every_worker_is_counted(two_instances):
    node = two_instances[0]
    labels = dict(namespace="kv", method="GET", status="400")
    before = value(scrape(node), "kvstore_requests_total", **labels)
    for _ in range(30):  # a new connection each: both workers take some
        answer = requests.get(f"{node.url}/api/kv/%01bad", timeout=10)
        assert answer.status_code == 400
    assert value(scrape(node), "kvstore_requests_total", **labels) == before + 30
    pids = {
        name.rpartition("_")[2].removesuffix(".db")
        for name in os.listdir(node.settings.metrics_dir)
        if name.startswith("counter_")
    }
    assert len(pids) >= 2, pids


def test_the_consumers_figures_per_partition(two_instances):
    node = two_instances[1]
    described = node.api("GET", "/api/cluster").json()
    samples = scrape(node)
    assert value(samples, "kvstore_consumer_up") == 1
    assert value(samples, "kvstore_consumer_lease") == 1
    assert value(samples, "kvstore_group_generation") == described["generation"]
    assert value(samples, "kvstore_group_members") == 2
    assert value(samples, "kvstore_consumer_rebalances_total") >= 1
    assert described["local"], "this instance holds partitions"
    for row in described["local"]:
        labels = dict(namespace=row["namespace"], partition=str(row["partition"]))
        assert value(samples, "kvstore_partition_applied_offset", **labels) >= (
            row["applied_offset"]
        )
        assert ("kvstore_partition_lag", frozenset(labels.items())) in samples
        assert ("kvstore_partition_end_offset", frozenset(labels.items())) in samples
        assert value(samples, "kvstore_partition_state", state="ready", **labels) == 1
        state = dict(labels, state="restoring")
        assert value(samples, "kvstore_partition_state", **state) == 0
        assert value(samples, "kvstore_partition_restore_remaining", **labels) == 0
        for passed_over in ("skipped", "misplaced"):
            name = f"kvstore_partition_records_{passed_over}_total"
            assert (name, frozenset(labels.items())) in samples


def test_applied_offset_and_end_offset_move_with_a_write(two_instances):
    key = "moving-offsets"
    owner = next(n for n in two_instances if n.url == owner_of(two_instances[0], key))
    written = owner.api("PUT", f"/api/kv/{key}", json="x")
    partition, offset = written.headers["ETag"].strip('"').split("-")
    labels = dict(namespace="kv", partition=partition)
    samples = scrape(owner)
    assert value(samples, "kvstore_partition_applied_offset", **labels) > int(offset)
    assert value(samples, "kvstore_partition_end_offset", **labels) > int(offset)


def worker_pids(node):
    found = subprocess.run(
        ["pgrep", "-P", str(node.web.pid)], capture_output=True, text=True
    ).stdout
    return {int(pid) for pid in found.split()}


def test_a_dead_workers_live_gauges_go_and_a_new_gunicorn_starts_from_zero(
    two_instances,
):
    node = two_instances[0]
    directory = node.settings.metrics_dir
    victim = min(worker_pids(node))
    assert (directory / f"gauge_livesum_{victim}.db").exists()
    os.kill(victim, signal.SIGKILL)
    wait_for(
        lambda: not (directory / f"gauge_livesum_{victim}.db").exists()
        and len(worker_pids(node)) == 2,
        30,
        "gunicorn to mark the worker dead and replace it",
    )
    assert (directory / f"counter_{victim}.db").exists(), "its counts still count"
    gets = dict(namespace="", method="GET", status="200")
    counted = value(scrape(node), "kvstore_requests_total", **gets)
    node.web.terminate()
    node.web.wait(10)
    node.start_web()
    assert not (directory / f"counter_{victim}.db").exists()
    assert value(scrape(node), "kvstore_requests_total", **gets) < counted
