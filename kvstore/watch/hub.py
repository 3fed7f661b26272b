"""One reader of a namespace's log per worker process, shared by every watch in it: it
reads every partition from the end it found, asks which records took no effect, and
offers each partition's events, in log order, to each watch. Reading once and fanning
out keeps a hundred watches as cheap as one for Kafka and for kafka-python's decoding.

It runs on its own thread; a watch joins it and learns where it stands (`tail`:
the next offset it reads of each partition), and reads what it needs below that
itself (kvstore.watch.stream). A partition whose decisions cannot be had now (its
owner is moving) is paused and asked again shortly, while the others flow. A hub
without watches stops after a while; one that fails ends its watches, whose clients
resume elsewhere or later.
"""

import logging
import os
import threading
import time

from kvstore import log
from kvstore.watch import decisions as decided, events

logger = logging.getLogger(__name__)
IDLE = 30.0  # seconds a hub without watches keeps reading
RETRY = 0.5  # seconds before a partition's decisions are asked again
POLL_MS = 200

# Why a watch ended: its client reads too slowly, history it needs was compacted,
# the log could not be read, or the worker is stopping.
SLOW, GONE, UNAVAILABLE, STOPPING = "slow", "gone", "unavailable", "stopping"

_hubs = {}  # (pid, namespace) -> Hub
_hubs_lock = threading.Lock()


class Closed(Exception):
    """The hub stopped before the watch could join: take a fresh one."""


def hub_for(settings, namespace, partitions, decisions):
    """This process's running Hub of `namespace`, started if there is none."""
    with _hubs_lock:
        key = (os.getpid(), namespace)
        hub = _hubs.get(key)
        if hub is None or hub.closed:
            hub = _hubs[key] = Hub(settings, namespace, partitions, decisions)
        return hub


def stop_all():
    """End every watch of this process (the worker is stopping): their clients resume
    with another worker or instance."""
    with _hubs_lock:
        hubs = list(_hubs.values())
    for hub in hubs:
        hub.end_all(STOPPING)


class Hub:
    def __init__(self, settings, namespace, partitions, decisions):
        self.namespace, self.partitions = namespace, partitions
        self.decisions = decisions
        self.reader = log.PartitionReader(
            settings, settings.topic(namespace), range(partitions)
        )
        self.tail = {p: end for p, (_, end) in self.reader.offsets().items()}
        for partition, end in self.tail.items():
            self.reader.seek(partition, end)
        self.watches, self.lock = set(), threading.Lock()
        self.closed, self.idle_since = False, time.monotonic()
        self.pending, self.retry_at = {}, {}
        threading.Thread(
            target=self._run, name=f"kvstore-hub-{namespace}", daemon=True
        ).start()

    def join(self, watch):
        """Offer `watch` every event from now on; returns the tail it joined at."""
        with self.lock:
            if self.closed:
                raise Closed()
            self.watches.add(watch)
            return dict(self.tail)

    def leave(self, watch):
        with self.lock:
            self.watches.discard(watch)
            if not self.watches:
                self.idle_since = time.monotonic()

    def end_all(self, reason):
        with self.lock:
            for watch in self.watches:
                watch.end(reason)

    def _run(self):
        try:
            while not self._idle():
                for partition, records in self.reader.poll(POLL_MS).items():
                    self.pending.setdefault(partition, []).extend(records)
                self._deliver()
        except Exception as exc:  # Kafka gone or anything else: no watch may hang
            logger.warning("watch hub of %s stopped: %s", self.namespace, exc)
            with self.lock:
                self.closed = True
            self.end_all(UNAVAILABLE)
        finally:
            self.reader.close()

    def _idle(self):
        with self.lock:
            quiet = time.monotonic() - self.idle_since > IDLE
            if not self.watches and quiet:
                self.closed = True
            return self.closed

    def _deliver(self):
        now = time.monotonic()
        for partition, records in list(self.pending.items()):
            if self.retry_at.get(partition, 0) > now:
                continue
            try:
                found = self._events(partition, records)
            except decided.Undecided as exc:
                logger.info("watch hub: partition %s undecided: %s", partition, exc)
                self.retry_at[partition] = now + RETRY
                self.reader.pause(partition)
                continue
            self._offer(partition, records, found)
            del self.pending[partition]
            self.retry_at.pop(partition, None)
            self.reader.resume(partition)

    def _events(self, partition, records):
        """The events of a partition's records, once it is known which took no
        effect (Undecided when that cannot be had now)."""
        asked = [r for r in records if events.decided_by_applier(r)]
        no_effect = set()
        if asked:
            try:
                no_effect = self.decisions.no_effect(
                    self.namespace, partition, asked[0].offset, asked[-1].offset + 1
                )
            except decided.Forgotten as exc:  # not for live records: a broken cache
                raise decided.Undecided(str(exc)) from None
        return events.events_of(records, self.partitions, no_effect)

    def _offer(self, partition, records, found):
        through = records[-1].offset + 1
        # A hole: the hub fell behind the cleaner, and its watches lost records.
        whole = events.follow(self.tail[partition], records)
        with self.lock:
            for watch in self.watches:
                if whole:
                    watch.offer(partition, found, through)
                else:
                    watch.end(GONE)
            self.tail[partition] = through
