"""One-instance benchmarks: cold restore vs kafka-python's consumer benchmark, warm
restart, PUT latency.

    .venv/bin/python bench/store_bench.py [--records 1000000] [--seconds 15]

Starts its own broker (bin/kafka-local, free ports, throw-away data), writes `--records`
small JSON records (~100 bytes) over 200k keys to a fresh kv topic with a plain
producer, then in the same run:

1. the peer: `python -m kafka.benchmarks.consumer_performance` reads the whole topic;
2. cold restore: `manage.py kvstore_consume` on an empty cache until every partition is
   ready;
3. warm restart: SIGTERM, start again with nothing new, time until every partition is
   ready;
4. PUT latency with read-your-writes: gunicorn (3 workers x 4 threads) + the consumer,
   driven by wrk (bench/load.lua, mode putkv) with 1 and 16 connections; wrk runs on the
   same 2 cores as the store.

Prints a Markdown report on stdout.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
import django  # noqa: E402

django.setup()

from tests.brokers import kafka_local  # noqa: E402
from tests.instances import Instance, isolated_settings, wait_for  # noqa: E402


def produce(settings, records, keys=200_000):
    from kafka import KafkaProducer

    producer = KafkaProducer(
        bootstrap_servers=list(settings.bootstrap_servers),
        linger_ms=20,
        batch_size=512 * 1024,
        acks=1,
        enable_idempotence=False,
    )
    pad = "x" * 60
    for i in range(records):
        producer.send(
            settings.topic("kv"),
            key=f"key-{i % keys:06d}".encode(),
            value=f'{{"n":{i},"pad":"{pad}"}}'.encode(),
        )
    producer.flush()
    producer.close()


def peer_rate(settings, records):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "kafka.benchmarks.consumer_performance",
            "--bootstrap-servers",
            *settings.bootstrap_servers,
            "--topic",
            settings.topic("kv"),
            "--num-records",
            str(records),
            "--stats-interval",
            "60",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=900,
    ).stdout
    consumed = int(re.search(r"Consumed (\d+) records", out).group(1))
    seconds = float(re.search(r"Execution time: ([\d.]+) secs", out).group(1))
    return consumed / seconds


def all_ready(node):
    rows = node.cache("SELECT state FROM partitions")
    return bool(rows) and {state for (state,) in rows} == {"ready"}


def peak_rss_mb(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def restore(node, records):
    began = time.monotonic()
    node.start_consumer()
    wait_for(
        lambda: all_ready(node), 1800, "the restore", node.consumer_log, interval=0.02
    )
    elapsed = time.monotonic() - began
    own = re.findall(
        r"restored (\d+) records in ([\d.]+)s", node.consumer_log.read_text()
    )
    return elapsed, own[-1] if own else None, peak_rss_mb(node.consumer.pid)


def wrk(url, script_args, connections, seconds):
    """Run wrk with bench/load.lua (`script_args`: its mode and count); the figures of
    its RESULT line."""
    out = subprocess.run(
        [
            "wrk",
            "-t",
            str(min(connections, 2)),
            "-c",
            str(connections),
            "-d",
            f"{seconds}s",
            "--timeout",
            "10s",
            "-s",
            str(ROOT / "bench" / "load.lua"),
            url,
            "--",
            *script_args,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 120,
    ).stdout
    line = next(line for line in out.splitlines() if line.startswith("RESULT"))
    figures = {k: float(v) for k, v in (part.split("=") for part in line.split()[1:])}
    figures["rps"] = figures["requests"] / figures["seconds"]
    return figures


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=int, default=15)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install wrk")
    report = []
    with (
        kafka_local() as bootstrap,
        tempfile.TemporaryDirectory(prefix="kvstore-bench-") as tmp,
    ):
        settings = isolated_settings(bootstrap, partitions=6, session_timeout_ms=6000)
        from kvstore import log, topics

        with log.admin(settings) as admin:
            topics.ensure(admin, settings)
        began = time.monotonic()
        produce(settings, args.records)
        report.append(
            f"- wrote {args.records} records in {time.monotonic() - began:.1f}s (plain "
            "producer, acks=1)"
        )

        peer = peer_rate(settings, args.records)
        node = Instance(settings, Path(tmp) / "node", workers=3)
        elapsed, own, rss = restore(node, args.records)
        ours = args.records / elapsed
        report.append(f"- kafka-python consumer_performance: **{peer:,.0f} records/s**")
        report.append(
            f"- cold restore into the cache (process start to all partitions ready): "
            f"{elapsed:.1f}s = **{ours:,.0f} records/s**, **{ours / peer:.2f}x** the "
            "peer "
            f"(consumer's own count from assignment: {own[0]} records in {own[1]}s); "
            f"consumer peak RSS {rss:.0f} MB"
        )

        assert node.stop_consumer() == 0
        warm = []
        for _ in range(3):
            began = time.monotonic()
            node.start_consumer()
            wait_for(
                lambda: all_ready(node),
                120,
                "the warm restart",
                node.consumer_log,
                interval=0.01,
            )
            warm.append(time.monotonic() - began)
            assert node.stop_consumer() == 0
        warm.sort()
        report.append(
            f"- warm restart with nothing new (process start to all ready), 3 runs: "
            f"median **{warm[1]:.2f}s** (min {warm[0]:.2f}, max {warm[2]:.2f})"
        )

        node.start()
        for connections in (1, 16):
            figures = wrk(node.url, ["putkv"], connections, args.seconds)
            report.append(
                f"- PUT with read-your-writes, {connections} connection(s), "
                f"{args.seconds}s: "
                f"{figures['rps']:,.0f} req/s, p50 **{figures['p50_ms']:.1f} ms**, "
                f"p99 **{figures['p99_ms']:.1f} ms**; non-2xx {figures['non2xx']:.0f}, "
                f"202 (not applied in time) {figures['not_applied']:.0f}, socket "
                f"errors {figures['socket_errors']:.0f}"
            )
        node.stop()
    print("\n".join(report))


if __name__ == "__main__":
    main()
