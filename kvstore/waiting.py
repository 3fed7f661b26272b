"""Waiting on this instance's cache: until it has applied a position (a read's
min_position), or until anything it holds moves (a long-poll, a watch's decisions);
and the bound on how many requests may wait long at once.

Requests that wait long hold a web thread each, so they are counted per instance
(`Slots`), and the threads they use come on top of the ones plain requests have
(kvstore.api.server). They wake on one watcher per process (`Changes`), which looks
at the cache when the consumer rings (kvstore.wake) and every few tens of
milliseconds besides, only while someone waits.
"""

import fcntl
import logging
import os
import random
import threading
import time

from kvstore import cache, wake

logger = logging.getLogger(__name__)
# Seconds between two looks at the cache while someone waits: TICK when this process
# cannot hear the consumer's wake-ups, FALLBACK when it can (one may be lost).
TICK, FALLBACK = 0.005, 0.05


class Changes:
    """Wakes waiters when the cache's partition positions move. One per process."""

    def __init__(self, reader):
        self.reader = reader
        self._moved = threading.Condition()
        self._waiters = 0
        self._thread = None
        self._seen = 0  # how many moves the watcher has seen: a waiter's "since"
        try:
            self._ear = wake.Ear(reader.path)
        except OSError as exc:  # no abstract sockets here: poll instead
            logger.warning("cannot listen for the consumer's wake-ups: %s", exc)
            self._ear = None

    @property
    def seen(self):
        """A mark to pass to `wait` as `since`, taken before looking at the cache."""
        return self._seen

    def wait(self, timeout, since=None):
        """Block until some partition's position moves or `timeout` passes. With
        `since` (a `seen` mark), return at once if it moved after that mark: a move
        the watcher noticed between a waiter's look at the cache and its wait would
        otherwise be missed until the next one."""
        with self._moved:
            self._waiters += 1
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._watch, name="kvstore-changes", daemon=True
                )
                self._thread.start()
            try:
                if since is None or since == self._seen:
                    self._moved.wait(max(timeout, 0))
            finally:
                self._waiters -= 1

    def _watch(self):
        seen = None
        while True:
            with self._moved:
                if not self._waiters:
                    self._thread = None
                    return
            now = self._positions()
            if now != seen:
                seen = now
                with self._moved:
                    self._seen += 1
                    self._moved.notify_all()
            if self._ear is None:
                time.sleep(TICK)
            else:
                self._ear.wait(FALLBACK)

    def _positions(self):
        conn = self.reader.connection()
        if conn is None:
            return None
        return conn.execute(
            "SELECT namespace, partition, position, state FROM partitions"
        ).fetchall()


def until_applied(reader, changes, namespace, partition, offset, timeout):
    """Wait until the cache has applied `offset` of a partition; False if it has not
    within `timeout` seconds, or the partition was revoked meanwhile."""
    deadline = time.monotonic() + timeout
    while True:
        mark = changes.seen
        conn = reader.connection()
        state = cache.position(conn, namespace, partition) if conn else None
        if state is not None and state.position > offset:
            return True
        if state is not None and state.state == cache.REVOKED:
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        changes.wait(min(remaining, 0.5), since=mark)


class Slots:
    """At most `count` long waits at once per instance, across every worker process:
    each holds one byte of a lock file, locked with fcntl, so the slots of a process
    that dies are free again at once."""

    def __init__(self, path, count):
        self.path, self.count = path, count
        self._fd = self._pid = None
        self._held = set()  # fcntl locks belong to the process: threads share them
        self._lock = threading.Lock()

    def take(self):
        """A free slot's number, or None when all are taken."""
        with self._lock:
            fd = self._file()
            start = random.randrange(self.count)
            for index in ((start + i) % self.count for i in range(self.count)):
                if index in self._held:
                    continue
                try:
                    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, index)
                except OSError:
                    continue
                self._held.add(index)
                return index
        return None

    def release(self, index):
        with self._lock:
            if index in self._held:
                fcntl.lockf(self._file(), fcntl.LOCK_UN, 1, index)
                self._held.discard(index)

    def in_use(self):
        """Slots taken by this process."""
        return len(self._held)

    def _file(self):
        if self._pid != os.getpid():  # a forked worker needs its own descriptor
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            self._pid = os.getpid()
            self._held = set()
        return self._fd


def slots_path(cache_path):
    """The lock file of an instance's slots, beside its cache file."""
    return cache_path.with_name(cache_path.name + ".waits")
