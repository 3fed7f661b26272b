"""What waiting writers cost one web process: CPU per applied offset, no Kafka needed.

    .venv/bin/python bench/wakeups.py [--threads 1,4,8,16] [--offsets 3000] [--gap 0.001]

For each thread count, that many threads of this process wait in turn for consecutive
offsets of one partition (`kvstore.waiting.until_applied`, as a writer waits for its
record), while a second process plays the consumer: it applies one offset per SQLite
transaction every `--gap` seconds and rings the wake-up bell (`kvstore.wake`), as the
consumer does under single-record writes. Prints this process's CPU time per applied
offset (the waiters and their watcher thread) and how many waits ran out of time.
"""

import argparse
import multiprocessing
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kvstore import apply, cache, waiting, wake  # noqa: E402

NAMESPACE, PARTITION = "kv", 0


def consume(path, offsets, gap, go):
    conn = cache.connect(path)
    bell = wake.Bell(path)
    go.wait()
    time.sleep(0.3)  # every waiter is waiting
    for position in range(1, offsets + 1):
        apply.apply_batch(conn, {(NAMESPACE, PARTITION): ([], position)})
        bell.ring()
        time.sleep(gap)


def measure(path, threads, offsets, gap):
    """(CPU seconds of this process per applied offset, waits that timed out)."""
    conn = cache.connect(path)
    apply.Writer(conn).start_restore(NAMESPACE, PARTITION, 0, 0, wipe=True)
    reader = cache.Reader(path)
    changes = waiting.Changes(reader)
    go = multiprocessing.Event()
    consumer = multiprocessing.Process(target=consume, args=(path, offsets, gap, go))
    consumer.start()
    late = []

    def writer(first):
        for offset in range(first, offsets, threads):
            if not waiting.until_applied(
                reader, changes, NAMESPACE, PARTITION, offset, 10.0
            ):
                late.append(offset)

    waiters = [threading.Thread(target=writer, args=(i,)) for i in range(threads)]
    began = time.process_time()
    for waiter in waiters:
        waiter.start()
    go.set()
    for waiter in waiters:
        waiter.join()
    cpu = time.process_time() - began
    consumer.join()
    return cpu / offsets, len(late)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,4,8,16")
    parser.add_argument("--offsets", type=int, default=3000)
    parser.add_argument("--gap", type=float, default=0.001)
    args = parser.parse_args()
    print("| waiting threads | CPU µs per applied offset | waits timed out |")
    print("| --- | --- | --- |")
    for threads in (int(t) for t in args.threads.split(",")):
        with tempfile.TemporaryDirectory(prefix="kvstore-wakeups-") as directory:
            path = Path(directory) / "cache.sqlite3"
            per_offset, late = measure(path, threads, args.offsets, args.gap)
        print(f"| {threads} | {per_offset * 1e6:.0f} | {late} |")


if __name__ == "__main__":
    main()
