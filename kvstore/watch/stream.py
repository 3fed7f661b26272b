"""One client's watch: where it starts, the backlog it reads itself, the events its
process's hub queues for it, and the Server-Sent Events it is sent.

A watch starting below the hub's tail reads that part of the log with a reader of its
own, then goes on with what the hub queued meanwhile: each partition's events arrive
once each, in log order. Its queue is bounded: a client that reads too slowly is cut
off (its last event id resumes it exactly), rather than buffered without limit; but
only once it has its backlog, so that each resume gets further than the last.
"""

import collections
import threading
import time

from kvstore import log
from kvstore.watch import decisions as decided, events
from kvstore.watch.hub import GONE, SLOW, STOPPING, UNAVAILABLE

RETRY_MS = 1000  # the client's reconnection delay (SSE `retry`)
DECISIONS_PATIENCE = 10.0  # seconds the backlog waits for an owner to decide


class Watch:
    """What a client watches (a key, or keys starting with `prefix`), where it is (the
    next offset it wants of each partition it watches) and what is queued for it."""

    def __init__(self, namespace, starts, prefix="", key=None, buffer=10000):
        self.namespace, self.prefix, self.key = namespace, prefix, key
        self.next = dict(starts)  # partition -> next offset wanted
        self.floor = dict(starts)  # below it, the hub's offers are not for us
        self.buffer = buffer
        self.items, self.queued = collections.deque(), 0
        self.idle = {}  # partition -> its last queued item, when that holds no events
        self.ready = threading.Condition()
        self.ended = None

    def vector(self):
        return events.vector_of(self.namespace, self.next)

    def wants(self, event):
        return events.matches(event, self.prefix, self.key)

    def offer(self, partition, found, through):
        """The hub's events of a partition, up to `through`; called under its lock."""
        floor = self.floor.get(partition)
        if floor is None:
            return
        kept = [e for e in found if e.offset >= floor and self.wants(e)]
        with self.ready:
            if self.ended:
                return
            idle = self.idle.get(partition)
            if idle is not None and not kept:
                idle[2] = through  # nothing it wants in between: one item, not many
                return
            item = [partition, kept, through]
            self.items.append(item)
            if kept:
                self.idle.pop(partition, None)
            else:
                self.idle[partition] = item
            self.queued += len(kept)
            if self.queued > self.buffer or len(self.items) > self.buffer:
                self.ended = SLOW
            self.ready.notify()

    @property
    def stopped(self):
        """Whether it ended for a reason that stops its backlog too: any but SLOW. A
        backlog cut off for SLOW would start again from the same place on every
        resume, while writes go on: a watch that never gets anywhere."""
        return self.ended not in (None, SLOW)

    def end(self, reason):
        """End the watch for `reason`, unless it is stopped already: any reason
        replaces SLOW, as the client must hear of the other ones."""
        with self.ready:
            if not self.stopped:
                self.ended = reason
            self.ready.notify()

    def take(self, timeout):
        """The next queued (partition, events, through), or None after `timeout`."""
        with self.ready:
            self.ready.wait_for(lambda: self.items or self.ended, timeout)
            if self.ended or not self.items:
                return None
            item = self.items.popleft()
            if self.idle.get(item[0]) is item:
                del self.idle[item[0]]
            self.queued -= len(item[1])
            return tuple(item)


def frames(watch, backlog, keepalive):
    """The SSE bytes of a watch, after its `backlog` (frames of its own reading)."""
    yield events.retry(RETRY_MS)
    yield events.comment(f"watching from {watch.vector()}")
    yield from backlog
    sent = str(watch.vector())
    while True:
        item = watch.take(keepalive)
        if watch.ended:
            yield from _ending(watch)
            return
        if item is None:
            now = str(watch.vector())
            yield events.progress(now) if now != sent else events.comment("keep-alive")
            sent = now
            continue
        partition, found, through = item
        for event in found:
            watch.next[partition] = event.offset + 1
            sent = str(watch.vector())
            yield events.frame(event, sent)
        watch.next[partition] = max(watch.next[partition], through)


def _ending(watch):
    if watch.ended == GONE:
        yield events.failure(
            "history_compacted",
            "Compaction removed records this watch had not seen yet; resuming "
            "answers 410: list again and watch from the list's position.",
        )
    elif watch.ended == SLOW:
        # Where it got to, also past records it did not want: its resume goes on from
        # there, not from its last event.
        yield events.progress(str(watch.vector()))
        yield events.comment("this client reads too slowly: resume from the last id")
    elif watch.ended in (UNAVAILABLE, STOPPING):
        yield events.retry(RETRY_MS)
        yield events.comment(f"ending ({watch.ended}): resume from the last id")


def backlog(settings, watch, upto, partitions, decisions):
    """Frames of what `watch` wants below `upto` ({partition: the hub's tail when it
    joined}), read from the log; ends the watch when history is gone meanwhile."""
    below = {p: o for p, o in watch.next.items() if o < upto.get(p, o)}
    if not below:
        return
    reader = log.PartitionReader(settings, settings.topic(watch.namespace), list(below))
    try:
        for partition, offset in below.items():
            reader.seek(partition, offset)
        while below and not watch.stopped:
            for partition, records in reader.poll(200).items():
                records = [r for r in records if r.offset < upto[partition]]
                yield from _backlog_batch(
                    watch, partition, records, partitions, decisions
                )
            for partition in list(below):
                if reader.position(partition) >= upto[partition]:
                    if watch.next[partition] < upto[partition]:
                        watch.end(GONE)  # the reader passed records no longer there
                    del below[partition]
                    reader.pause(partition)
    finally:
        reader.close()


def _backlog_batch(watch, partition, records, partitions, decisions):
    if not records or watch.stopped:
        return
    if not events.follow(watch.next[partition], records):
        watch.end(GONE)  # compacted since the watch opened
        return
    found = events.events_of(records, partitions, _no_effect(watch, records, decisions))
    for event in found:
        watch.next[partition] = event.offset + 1
        if watch.wants(event):
            yield events.frame(event, watch.vector())
    watch.next[partition] = records[-1].offset + 1


def _no_effect(watch, records, decisions):
    asked = [r for r in records if events.decided_by_applier(r)]
    if not asked:
        return set()
    deadline = time.monotonic() + DECISIONS_PATIENCE
    while True:
        try:
            return decisions.no_effect(
                watch.namespace,
                asked[0].partition,
                asked[0].offset,
                asked[-1].offset + 1,
            )
        except decided.Forgotten:
            watch.end(GONE)
            return {r.offset for r in records}
        except decided.Undecided:
            if time.monotonic() > deadline:
                watch.end(UNAVAILABLE)
                return {r.offset for r in records}
            time.sleep(0.2)
