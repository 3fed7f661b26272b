"""Watch benchmarks: fan-out to many concurrent watchers, and write → event latency.

    .venv/bin/python bench/watch_bench.py [--watchers 100] [--burst 2000] [--rate 20]

Starts its own broker (bin/kafka-local, free ports, throw-away data) and two instances
(gunicorn 3 workers + consumer each, 6 partitions). `--watchers` SSE clients, spread
over both instances and over 4 client processes (python-requests, one thread each),
watch the prefix `bench.` from now.

Fan-out: `--burst` records are produced straight to the topic at once (the store's bulk
producer, so the write path does not bound it); the figure is the deliveries (records ×
watchers) per second from the burst's first record to the last delivery.

Latency: one client writes through the API (kvstore.client, read-your-writes PUTs) at
`--rate` per second for 10 s; each event's latency is from just before its PUT was sent
to its arrival at a watcher, over every (write, watcher) pair. Prints a Markdown report
on stdout.
"""

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
import django  # noqa: E402

django.setup()

import requests  # noqa: E402

from kvstore import log, topics  # noqa: E402
from kvstore.client import Client  # noqa: E402
from kvstore.clientwatch import parse  # noqa: E402
from kvstore.partitioner import partition_for  # noqa: E402
from tests.brokers import kafka_local  # noqa: E402
from tests.instances import Instance, isolated_settings  # noqa: E402
from tests.test_cluster import wait_stable  # noqa: E402

PROCESSES = 4
PARTITIONS = 6


LATENCY_SEQ = 1_000_000  # the latency phase's sequence numbers start here


def watcher(url, ready, arrivals):
    """One SSE client of `url`: records {seq: arrival time} of every put it gets."""
    session = requests.Session()
    session.trust_env = False
    answer = session.get(
        f"{url}/api/kv/watch?prefix=bench.", stream=True, timeout=(10, 300)
    )
    assert answer.status_code == 200, answer.text
    lines = answer.iter_lines(delimiter=b"\n")
    next(lines)  # the retry hint: the stream is open
    ready.release()
    for kind, data, _ in parse(lines):
        if kind == "put":
            arrivals[json.loads(data)["value"]["seq"]] = time.time()


def client_process(urls, count, first, started, commands, reports):
    """`count` watchers on threads of one process; answers "count" and "dump"."""
    arrivals, ready = [{} for _ in range(count)], threading.Semaphore(0)
    for i in range(count):
        url = urls[(first + i) % len(urls)]
        args = (url, ready, arrivals[i])
        threading.Thread(target=watcher, args=args, daemon=True).start()
    for _ in range(count):
        ready.acquire()
    started.put(count)
    while True:
        if commands.get() == "count":
            reports.put(sum(len(seen) for seen in arrivals))
        else:
            reports.put([dict(seen) for seen in arrivals])
            return


class Watchers:
    """`total` watchers over PROCESSES client processes."""

    def __init__(self, urls, total):
        self.started, self.reports = multiprocessing.Queue(), multiprocessing.Queue()
        self.commands = [multiprocessing.Queue() for _ in range(PROCESSES)]
        share = total // PROCESSES
        self.processes = [
            multiprocessing.Process(
                target=client_process,
                args=(urls, share, i * share, self.started, queue, self.reports),
                daemon=True,
            )
            for i, queue in enumerate(self.commands)
        ]
        for process in self.processes:
            process.start()
        self.total = sum(self.started.get(timeout=300) for _ in self.processes)

    def delivered(self):
        for queue in self.commands:
            queue.put("count")
        return sum(self.reports.get(timeout=60) for _ in self.processes)

    def wait(self, deliveries, timeout):
        deadline = time.monotonic() + timeout
        while self.delivered() < deliveries and time.monotonic() < deadline:
            time.sleep(0.2)

    def dump(self):
        for queue in self.commands:
            queue.put("dump")
        found = [self.reports.get(timeout=60) for _ in self.processes]
        for process in self.processes:
            process.join(10)
        return [seen for each in found for seen in each]


def fan_out(settings, watchers, burst):
    """Produce `burst` records at once; when they began, once all are delivered."""
    producer, topic = log.BulkProducer(settings), settings.topic("kv")
    producer.send(topic, 0, b"warm-up", b"1")  # connected before the clock starts
    producer.flush()
    began = time.time()
    for i in range(burst):
        key = f"bench.f.{i % 500}"
        value = json.dumps({"seq": i}).encode()
        producer.send(topic, partition_for(key, PARTITIONS), key.encode(), value)
    producer.flush()
    producer.close()
    watchers.wait(burst * watchers.total, timeout=300)
    return began


def latency(url, rate, seconds=10):
    """{seq: time just before its PUT was sent} and the PUTs' own latencies (ms)."""
    client, sent, puts = Client(url), {}, []
    client.session.trust_env = False
    for i in range(int(rate * seconds)):
        seq = LATENCY_SEQ + i
        sent[seq] = time.time()
        answer = client.put("kv", f"bench.l.{i % 50}", {"seq": seq})
        puts.append((time.time() - sent[seq]) * 1000)
        assert answer.status_code in (200, 201), answer.text
        time.sleep(max(0.0, sent[seq] + 1 / rate - time.time()))
    return sent, puts


def percentile(samples, fraction):
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--watchers", type=int, default=100)
    parser.add_argument("--burst", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=20)
    args = parser.parse_args()
    with kafka_local() as bootstrap, tempfile.TemporaryDirectory() as tmp:
        settings = isolated_settings(
            bootstrap, partitions=PARTITIONS, session_timeout_ms=10000
        )
        with log.admin(settings) as admin:
            topics.ensure(admin, settings)
        nodes = [Instance(settings, Path(tmp) / f"n{i}", workers=3) for i in range(2)]
        try:
            for node in nodes:
                node.start_consumer()
                node.start_web()
            wait_stable(nodes)
            report(settings, nodes, args)
        finally:
            for node in nodes:
                node.stop()


def report(settings, nodes, args):
    urls = [node.url for node in nodes]
    watchers = Watchers(urls, args.watchers)
    began = fan_out(settings, watchers, args.burst)
    sent, puts = latency(urls[0], args.rate)
    watchers.wait((args.burst + len(sent)) * watchers.total, timeout=120)
    arrivals = watchers.dump()
    burst = [t for seen in arrivals for seq, t in seen.items() if seq < LATENCY_SEQ]
    lags = [
        (t - sent[seq]) * 1000
        for seen in arrivals
        for seq, t in seen.items()
        if seq in sent
    ]
    seconds = max(burst) - began
    print(f"| figure | measured ({watchers.total} watchers over 2 instances) |")
    print("| --- | --- |")
    print(
        f"| fan-out: {args.burst} records produced at once | {len(burst)} of "
        f"{args.burst * watchers.total} deliveries in {seconds:.2f} s: "
        f"**{len(burst) / seconds:,.0f} events/s** |"
    )
    print(
        f"| write → event latency ({len(sent)} PUTs at {args.rate:g}/s, "
        f"{len(lags)} deliveries) | p50 **{statistics.median(lags):.1f} ms**, "
        f"p99 **{percentile(lags, 0.99):.1f} ms**, max {max(lags):.1f} ms |"
    )
    print(
        f"| the PUTs themselves (read-your-writes) | p50 "
        f"{statistics.median(puts):.1f} ms, p99 {percentile(puts, 0.99):.1f} ms |"
    )


if __name__ == "__main__":
    main()
