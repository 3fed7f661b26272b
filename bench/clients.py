"""What kafka-python itself costs per record, as the store uses it: CPU time per record
of one producer and of one consumer, with and without the client's own metrics.

    .venv/bin/python bench/clients.py [--seconds 6] [--rounds 3] [--threads 1,5,16]

Starts a broker (bin/kafka-local) and a topic of 6 partitions. Producer: one idempotent,
acks=all, linger-0 KafkaProducer shared by N threads, each sending one small record and
waiting for its acknowledgement, as a web worker's request threads do. Consumer: one
KafkaConsumer reading single records that another process writes at 1,000 a second, as
the consumer process reads single-record PUTs. Each figure is the process's CPU time per
record; settings alternate within each round, after an 8 s warm-up of the broker. A last
consumer row has its fetches wait at the broker as kvstore.pacing makes them wait under
concurrent writes.
"""

import argparse
import collections
import multiprocessing
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kafka import KafkaConsumer, KafkaProducer, TopicPartition  # noqa: E402
from kafka.admin import KafkaAdminClient, NewTopic  # noqa: E402

from kvstore import pacing  # noqa: E402
from tests.brokers import LocalKafka  # noqa: E402

PACED = "consumer, 1,000 records/s, fetches waiting as under concurrent writes"
TOPIC, PARTITIONS, VALUE = "clients", 6, b'{"name": "a small value"}'


def producer(bootstrap, metrics):
    return KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=0,
        metrics_enabled=metrics,
    )


def send_for(client, seconds, threads):
    """Records acknowledged by `threads` threads sending one at a time."""
    stop, counts = time.monotonic() + seconds, []

    def sender(first):
        sent = 0
        while time.monotonic() < stop:
            key = b"k%d" % ((first + sent * threads) % 1000)
            client.send(TOPIC, key=key, value=VALUE, partition=sent % PARTITIONS).get(
                10
            )
            sent += 1
        counts.append(sent)

    senders = [threading.Thread(target=sender, args=(i,)) for i in range(threads)]
    for thread in senders:
        thread.start()
    for thread in senders:
        thread.join()
    return sum(counts)


def produce_cpu(bootstrap, metrics, threads, seconds):
    client = producer(bootstrap, metrics)
    try:
        send_for(client, 1, threads)  # connected, metadata known
        began = time.process_time()
        records = send_for(client, seconds, threads)
        return (time.process_time() - began) / records
    finally:
        client.close()


def write_steadily(bootstrap, seconds, rate):
    client = producer(bootstrap, False)
    due, sent = time.monotonic(), 0
    stop = due + seconds
    while time.monotonic() < stop:
        client.send(TOPIC, value=VALUE, partition=sent % PARTITIONS).get(10)
        sent += 1
        due += 1 / rate
        time.sleep(max(0.0, due - time.monotonic()))
    client.close()


def consume_cpu(bootstrap, metrics, seconds, paced=False):
    """CPU per record of a consumer reading records written one by one at 1,000 a
    second; `paced`: its fetches wait at the broker as kvstore.pacing has them wait
    under concurrent writes."""
    fetches = (
        dict(fetch_min_bytes=pacing.BATCH_BYTES, fetch_max_wait_ms=pacing.BATCH_WAIT_MS)
        if paced
        else dict(fetch_max_wait_ms=100)
    )
    client = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        metrics_enabled=metrics,
        **fetches,
    )
    try:
        partitions = [TopicPartition(TOPIC, p) for p in range(PARTITIONS)]
        client.assign(partitions)
        client.seek_to_end()
        for partition in partitions:
            client.position(partition)
        client.poll(200)
        writer = multiprocessing.Process(
            target=write_steadily, args=(bootstrap, seconds + 1.5, 1000)
        )
        writer.start()
        time.sleep(0.5)
        began, records = time.process_time(), 0
        stop = time.monotonic() + seconds
        while time.monotonic() < stop:
            records += sum(len(r) for r in client.poll(timeout_ms=50).values())
        cpu = time.process_time() - began
        writer.join()
        return cpu / records
    finally:
        client.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", default="1,5,16")
    args = parser.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    figures = collections.defaultdict(list)  # (what, metrics) -> [CPU s per record]
    with LocalKafka(nodes=1) as kafka:
        admin = KafkaAdminClient(bootstrap_servers=kafka.bootstrap)
        admin.create_topics([NewTopic(TOPIC, PARTITIONS, 1)])
        admin.close()
        produce_cpu(kafka.bootstrap, False, 16, 8)  # the broker's JIT
        for _ in range(args.rounds):
            for metrics in (True, False):
                for count in threads:
                    figure = produce_cpu(kafka.bootstrap, metrics, count, args.seconds)
                    figures[(f"producer, {count} threads", metrics)].append(figure)
                figure = consume_cpu(kafka.bootstrap, metrics, args.seconds)
                figures[("consumer, 1,000 records/s", metrics)].append(figure)
            figure = consume_cpu(kafka.bootstrap, False, args.seconds, paced=True)
            figures[(PACED, False)].append(figure)
    print("| CPU ms per record (rounds; median) | metrics on | metrics off |")
    print("| --- | --- | --- |")
    for what in dict.fromkeys(what for what, _ in figures):
        cells = []
        for metrics in (True, False):
            values = figures.get((what, metrics))
            if values is None:
                cells.append("—")
                continue
            rounds = ", ".join(f"{v * 1000:.3f}" for v in values)
            cells.append(f"{rounds}; **{statistics.median(values) * 1000:.3f}**")
        print(f"| {what} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
