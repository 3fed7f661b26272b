"""Measure bin/kafka-local: cold start time (jars cached, empty data dir) and the
broker's resident memory.

    .venv/bin/python bench/broker_start.py [--runs 5]

Each run starts a fresh single-node broker on free ports, reads the JVM's VmRSS once it
answers, then again after producing 200k records of 100 bytes (kafka-python's producer
benchmark), and stops it. Prints a Markdown table with the median and range of each
figure.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.brokers import free_port  # noqa: E402

SCRIPT = str(ROOT / "bin" / "kafka-local")


def rss_mb(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def one_run():
    port = free_port(count=2, step=100)
    with tempfile.TemporaryDirectory(prefix="kvstore-bench-kafka-") as data:
        env = dict(os.environ, KAFKA_PORT=str(port), KAFKA_DATA_DIR=data)
        began = time.monotonic()
        subprocess.run([SCRIPT, "start"], env=env, check=True, capture_output=True)
        started = time.monotonic() - began
        pid = int(Path(data, "node-1", "pid").read_text())
        idle = rss_mb(pid)
        try:
            subprocess.run(
                [
                    sys.executable,
                    "-c",
                    "from kafka.admin import KafkaAdminClient as A; "
                    f"A(bootstrap_servers='127.0.0.1:{port}').create_topics({{'bench': {{'num_partitions': 3, "
                    "'replication_factor': 1}}, wait_for_metadata=True)",
                ],
                check=True,
                capture_output=True,
                timeout=60,
            )
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "kafka.benchmarks.producer_performance",
                    "--bootstrap-servers",
                    f"127.0.0.1:{port}",
                    "--topic",
                    "bench",
                    "--num-records",
                    "200000",
                    "--record-size",
                    "100",
                    "--stats-interval",
                    "60",
                ],
                check=True,
                capture_output=True,
                timeout=300,
            )
            loaded = rss_mb(pid)
        finally:
            subprocess.run([SCRIPT, "stop"], env=env, check=True, capture_output=True)
    return started, idle, loaded


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    subprocess.run([SCRIPT, "fetch"], check=True)
    runs = [one_run() for _ in range(args.runs)]
    names = (
        "cold start to first metadata answer (s)",
        "RSS when ready (MB)",
        "RSS after 200k records (MB)",
    )
    print(f"| figure ({args.runs} runs) | median | min | max |\n|---|---|---|---|")
    for name, values in zip(names, zip(*runs)):
        print(
            f"| {name} | {statistics.median(values):.1f} | {min(values):.1f} | "
            f"{max(values):.1f} |"
        )


if __name__ == "__main__":
    main()
