"""Cluster benchmarks: failover times and GET latency by route.

    .venv/bin/python bench/cluster_bench.py [--runs 3] [--requests 2000]

Starts its own broker (bin/kafka-local, free ports, throw-away data) and, per failover
run, a fresh cluster of three instances (gunicorn 3 workers + consumer each, 6
partitions, the default session timeout of 10 s). Failover time = from stopping one
instance (SIGTERM to both its processes, or SIGKILL to both) until every one of 60 keys
answers 200 through the survivors (requests following redirects).

GET latency: one sequential client (python-requests, keep-alive) reads keys owned by
instance A (1) from A directly, (2) from B following the 307 to A, (3) with
kvstore.client.Client, which computes the owner from its cluster map. Same client
library and loop for all three, so the ratios compare routes. Prints a Markdown report
on stdout.
"""

import argparse
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
import django  # noqa: E402

django.setup()

import requests  # noqa: E402

from kvstore.client import Client  # noqa: E402
from tests.brokers import kafka_local  # noqa: E402
from tests.instances import isolated_settings  # noqa: E402
from tests.test_cluster import (
    PARTITIONS,
    failover_seconds,
    make_cluster,
    owner_of,
)  # noqa: E402


def failovers(bootstrap, tmp, runs, sig):
    times = []
    for run in range(runs):
        settings = isolated_settings(
            bootstrap, partitions=PARTITIONS, session_timeout_ms=10000
        )
        nodes = make_cluster(settings, Path(tmp) / f"{sig.name}-{run}", 3)
        try:
            keys = [f"k{i}" for i in range(60)]
            for key in keys:
                requests.put(
                    f"{nodes[0].url}/api/kv/{key}", json=key, timeout=10
                ).raise_for_status()
            times.append(failover_seconds(nodes, nodes[1], keys, sig))
        finally:
            for node in nodes:
                node.stop()
    return times


def latencies(get, keys, count):
    samples = []
    for i in range(count):
        began = time.perf_counter()
        answer = get(keys[i % len(keys)])
        samples.append((time.perf_counter() - began) * 1000)
        assert answer.status_code == 200, answer.text
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.99) - 1]


def routes(bootstrap, tmp, count):
    settings = isolated_settings(bootstrap, partitions=PARTITIONS)
    nodes = make_cluster(settings, Path(tmp) / "latency", 3)
    try:
        a, b = nodes[0], nodes[1]
        keys = [k for k in (f"lat-{i}" for i in range(400)) if owner_of(a, k) == a.url][
            :50
        ]
        for key in keys:
            requests.put(
                f"{a.url}/api/kv/{key}", json={"key": key, "pad": "x" * 60}, timeout=10
            ).raise_for_status()
        session, client_session = requests.Session(), requests.Session()
        session.trust_env = client_session.trust_env = (
            False  # see docs/PROFILES.md, section 3
        )
        client = Client(b.url, session=client_session)
        client.refresh()
        results = {}
        for _ in range(
            2
        ):  # the first pass warms connections and workers; the second is reported
            results = {
                "owner": latencies(
                    lambda k: session.get(f"{a.url}/api/kv/{k}", timeout=10),
                    keys,
                    count,
                ),
                "non-owner + 307": latencies(
                    lambda k: session.get(f"{b.url}/api/kv/{k}", timeout=10),
                    keys,
                    count,
                ),
                "client with map": latencies(
                    lambda k: client.get("kv", k), keys, count
                ),
            }
        assert client.hops == 0
        return results
    finally:
        for node in nodes:
            node.stop()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    with (
        kafka_local() as bootstrap,
        tempfile.TemporaryDirectory(prefix="kvstore-bench-") as tmp,
    ):
        lines = []
        for sig, name in (
            (signal.SIGTERM, "graceful stop (SIGTERM)"),
            (signal.SIGKILL, "kill -9"),
        ):
            times = sorted(failovers(bootstrap, tmp, args.runs, sig))
            lines.append(
                f"| failover, {name} | median {statistics.median(times):.2f} s "
                f"(min {times[0]:.2f}, max {times[-1]:.2f}, {len(times)} runs) |"
            )
        results = routes(bootstrap, tmp, args.requests)
        owner_p50 = results["owner"][0]
        for route, (p50, p99) in results.items():
            lines.append(
                f"| GET via {route} | p50 {p50:.2f} ms, p99 {p99:.2f} ms, "
                f"**{p50 / owner_p50:.2f}x** the owner's p50 |"
            )
    print("| figure | measured |\n| --- | --- |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
