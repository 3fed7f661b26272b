"""What KVSTORE_COMPRESSION costs or gains: `manage.py kvstore_import` throughput and the
bytes the records take in the broker's log, for each codec.

    .venv/bin/python bench/compression.py --records 200000 --runs 3

Starts its own broker (bin/kafka-local, free ports, throw-away data); every import goes
to fresh topics; codecs take turns within each run, so a busy machine slows all alike.
Prints a Markdown table (docs/COMPRESSION.md holds the last one).
"""

import argparse
import json
import os
import random
import re
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from kvstore import log, topics  # noqa: E402
from tests import rawlog  # noqa: E402
from tests.brokers import kafka_local  # noqa: E402
from tests.instances import PYTHON, environment, isolated_settings  # noqa: E402

CODECS = ("none", "gzip", "snappy", "lz4", "zstd")
PLANS = ("free", "team", "business", "enterprise")


def users_file(path, count):
    """Records like the users namespace's, about 110 bytes each, varied enough that a
    codec does not find a value repeated verbatim."""
    rng = random.Random(7)
    with open(path, "w") as out:
        for i in range(count):
            value = {
                "name": f"user {rng.randrange(10**6)}",
                "email": f"u{i}.{rng.randrange(10**4)}@example.com",
                "plan": rng.choice(PLANS),
                "visits": rng.randrange(10**5),
            }
            line = {"namespace": "users", "key": f"u{i:07d}", "value": value}
            out.write(json.dumps(line) + "\n")
    return path


def import_once(bootstrap, codec, path):
    """(records/s as kvstore_import reports it, CPU seconds the import process used,
    bytes in the log) for one codec."""
    settings = isolated_settings(bootstrap, partitions=6, compression=codec)
    with log.admin(settings) as admin:
        topics.ensure(admin, settings)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(
        [PYTHON, "manage.py", "kvstore_import", str(path)],
        cwd=ROOT,
        env=environment(settings),
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if done.returncode != 0:
        raise RuntimeError(f"kvstore_import ({codec}) failed:\n{done.stderr[-2000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    rate = float(
        re.search(r"\(([\d,]+) records/s\)", done.stdout).group(1).replace(",", "")
    )
    return rate, cpu, rawlog.log_size([bootstrap], settings.topic("users"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    rates, cpus, sizes = {c: [] for c in CODECS}, {c: [] for c in CODECS}, {}
    with (
        kafka_local() as bootstrap,
        tempfile.TemporaryDirectory(prefix="kvstore-bench-") as tmp,
    ):
        path = users_file(Path(tmp) / "users.jsonl", args.records)
        raw = path.stat().st_size
        for run in range(args.runs):
            order = CODECS[run % len(CODECS) :] + CODECS[: run % len(CODECS)]
            for codec in order:
                rate, cpu, sizes[codec] = import_once(bootstrap, codec, path)
                rates[codec].append(rate)
                cpus[codec].append(cpu)
                print(
                    f"run {run + 1} {codec}: {rate:,.0f} records/s, {cpu:.1f} CPU s",
                    flush=True,
                )
    base = statistics.median(rates["none"])
    base_cpu = statistics.median(cpus["none"])
    print(f"\n{args.records:,} records, {raw / args.records:.0f} B per line")
    print(
        "| KVSTORE_COMPRESSION | import (records/s, median) | runs | vs none "
        "| CPU s of the import process (median) | bytes in the log | vs none |"
    )
    print("|---|---|---|---|---|---|---|")
    for codec in CODECS:
        median = statistics.median(rates[codec])
        each = ", ".join(f"{r:,.0f}" for r in rates[codec])
        cpu = statistics.median(cpus[codec])
        print(
            f"| {codec} | {median:,.0f} | {each} | {median / base:.2f}× "
            f"| {cpu:.1f} ({cpu / base_cpu:.2f}×) "
            f"| {sizes[codec] / 1e6:.1f} MB | {sizes[codec] / sizes['none']:.2f}× |"
        )


if __name__ == "__main__":
    main()
