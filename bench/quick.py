"""A quick look at one instance's speed, for before/after comparisons while changing
the hot paths (bench/run is the full, recorded benchmark).

    .venv/bin/python bench/quick.py [--modes getkv,putkv,putkv1] [--seconds 8]
        [--rounds 2] [--workers 3] [--threads 4] [--profile DIR] [--cpu]

Starts a broker (bin/kafka-local), one instance over 20,000 imported kv records and
runs wrk (bench/load.lua) in each mode, 16 connections (a mode ending in 1: one).
--profile records the web workers and the consumer with py-spy (`pip install py-spy`,
GIL samples only) during one run of the first mode, as collapsed stacks in DIR. --cpu adds to each
figure the CPU time per request of the web workers, the consumer and the broker (from
/proc), which varies less between runs than the rate does.
"""

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
import django  # noqa: E402

django.setup()

from bench.store_bench import all_ready, wrk  # noqa: E402
from kvstore import log, topics  # noqa: E402
from tests.brokers import LocalKafka  # noqa: E402
from tests.instances import (  # noqa: E402
    PYTHON,
    Instance,
    environment,
    isolated_settings,
    pgrep,
    wait_for,
)

RECORDS = 20_000
BROKER = (
    "kafka.Kafka .*/kvstore-kafka-"  # the command line of bin/kafka-local's brokers
)


class Tuned(Instance):
    """An instance whose gunicorn runs `threads` threads per worker."""

    threads = 4

    def wrap(self, argv):
        argv = list(argv)
        if "--threads" in argv:
            argv[argv.index("--threads") + 1] = str(self.threads)
        return argv


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", default="getkv,putkv,putkv1")
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--profile", type=Path)
    parser.add_argument("--cpu", action="store_true")
    args = parser.parse_args()
    with LocalKafka(nodes=1) as kafka, tempfile.TemporaryDirectory() as tmp:
        node = start(kafka.bootstrap, Path(tmp), args)
        try:
            wrk(node.url, ["getkv", str(RECORDS)], 16, 2)  # warm-up
            if "put" in args.modes:  # the broker's JIT, docs/PROFILES.md §8
                wrk(node.url, ["putkv"], 16, 20)
            if args.profile:
                profile(node, args)
            for _ in range(args.rounds):
                for mode in args.modes.split(","):
                    measure(node, mode, args.seconds, args.cpu)
        finally:
            node.stop()


def start(bootstrap, tmp, args):
    settings = isolated_settings(bootstrap, partitions=6, session_timeout_ms=10000)
    with log.admin(settings) as admin:
        topics.ensure(admin, settings)
    records = tmp / "kv.jsonl"
    with open(records, "w") as out:
        for i in range(RECORDS):
            value = f'{{"n":{i},"pad":"{"x" * 70}"}}'
            out.write(f'{{"namespace":"kv","key":"key-{i:07d}","value":{value}}}\n')
    subprocess.run(
        [PYTHON, "manage.py", "kvstore_import", str(records)],
        cwd=ROOT,
        env=environment(settings),
        check=True,
        capture_output=True,
    )
    Tuned.threads = args.threads
    node = Tuned(settings, tmp / "node", workers=args.workers)
    node.start()
    wait_for(lambda: all_ready(node), 120, "the restore")
    return node


def measure(node, mode, seconds, cpu=False):
    connections = 1 if mode.endswith("1") else 16
    script = [mode.rstrip("1"), str(RECORDS)]
    figures, spent = cpu_per_request(
        _process_groups(node) if cpu else {},
        lambda: wrk(node.url, script, connections, seconds),
    )
    per_request = ", ".join(f"{name} {ms:.3f}" for name, ms in spent.items())
    print(
        f"{mode:8} {figures['rps']:8.0f} req/s  p50 {figures['p50_ms']:.2f} ms  "
        f"p99 {figures['p99_ms']:.2f} ms  non-2xx {figures['non2xx']:.0f}"
        + (f"  CPU ms per request: {per_request}" if cpu else ""),
        flush=True,
    )


def _process_groups(node):
    """{name: pids} of the web workers, the consumer and the broker."""
    return {
        "web": pgrep("-P", str(node.web.pid)),
        "consumer": [node.consumer.pid],
        "broker": pgrep("-f", BROKER),
    }


def cpu_per_request(groups, run):
    """`run()`'s wrk figures, and {name: CPU ms per request} that each group of
    processes (`{name: pids}`) spent during it."""
    before = _cpu_seconds(groups)
    figures = run()
    after = _cpu_seconds(groups)
    done = max(figures["requests"], 1)
    return figures, {
        name: (after[name] - before[name]) * 1000 / done for name in groups
    }


def _cpu_seconds(groups):
    """{name: user + system CPU seconds of its processes so far}."""
    tick = os.sysconf("SC_CLK_TCK")

    def seconds(pid):
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rfind(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / tick

    return {name: sum(map(seconds, pids)) for name, pids in groups.items()}


def profile(node, args):
    args.profile.mkdir(parents=True, exist_ok=True)
    workers = pgrep("-P", str(node.web.pid))
    processes = [("worker", pid) for pid in workers] + [("consumer", node.consumer.pid)]
    spies = [
        subprocess.Popen(
            [str(ROOT / ".venv/bin/py-spy"), "record", "-p", str(pid), "--gil"]
            + ["-d", str(args.seconds), "-r", "200", "-f", "raw", "--nonblocking"]
            + ["-o", str(args.profile / f"{name}-{pid}.txt")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name, pid in processes
    ]
    measure(node, args.modes.split(",")[0], args.seconds)
    for spy in spies:
        spy.wait()


if __name__ == "__main__":
    main()
