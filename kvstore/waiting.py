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
    """Wakes waiters when the cache's partition positions move. One per process.

    Two kinds of waiter: `wait` returns on any move (a long-poll, a watch), and
    `awaiting` wakes one thread only once its own partition has applied its offset
    or was revoked, so a wake-up per consumer transaction does not rouse every
    waiting writer of the process to ask SQLite again.
    """

    def __init__(self, reader):
        self.reader = reader
        self._moved = threading.Condition()
        self._waiters = 0
        self._targets = {}  # (namespace, partition) -> {threading.Event: offset}
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
            self._joined()
            try:
                if since is None or since == self._seen:
                    self._moved.wait(max(timeout, 0))
            finally:
                self._waiters -= 1

    def awaiting(self, namespace, partition, offset):
        """An Event the watcher sets once it sees the partition past `offset`, or
        revoked; `done` with it after. Register before looking at the cache, and
        clear the event before each look: a move after the look then sets it, one
        before shows in the look."""
        reached = threading.Event()
        with self._moved:
            self._targets.setdefault((namespace, partition), {})[reached] = offset
            self._joined()
        return reached

    def done(self, namespace, partition, reached):
        with self._moved:
            self._waiters -= 1
            targets = self._targets[(namespace, partition)]
            del targets[reached]
            if not targets:
                del self._targets[(namespace, partition)]

    def _joined(self):
        """Count one more waiter and make sure the watcher runs (under _moved)."""
        self._waiters += 1
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(
                target=self._watch, name="kvstore-changes", daemon=True
            )
            self._thread.start()

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
                    self._wake_targets(now)
            if self._ear is None:
                time.sleep(TICK)
            else:
                self._ear.wait(FALLBACK)

    def _wake_targets(self, positions):
        """Set the events of the waiters `positions` satisfies (under _moved)."""
        for key, targets in self._targets.items():
            position = positions.get(key)
            for reached, offset in targets.items():
                if _verdict(position, offset) is not None:
                    reached.set()

    def _positions(self):
        """{(namespace, partition): cache.Position} as the cache has them now."""
        conn = self.reader.connection()
        if conn is None:
            return {}
        rows = conn.execute(
            "SELECT namespace, partition, state, position FROM partitions"
        ).fetchall()
        return {(ns, p): cache.Position(state, pos) for ns, p, state, pos in rows}


def until_applied(reader, changes, namespace, partition, offset, timeout):
    """Wait until the cache has applied `offset` of a partition; False if it has not
    within `timeout` seconds, or the partition was revoked meanwhile."""
    deadline = time.monotonic() + timeout
    applied = _applied(reader, namespace, partition, offset)
    if applied is not None:  # the common case for a key's previous write
        return applied
    reached = changes.awaiting(namespace, partition, offset)
    try:
        while True:
            reached.clear()
            applied = _applied(reader, namespace, partition, offset)
            if applied is not None:
                return applied
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            # The watcher sets `reached`; the timeout only bounds a lost wake-up.
            reached.wait(min(remaining, 0.5))
    finally:
        changes.done(namespace, partition, reached)


def _applied(reader, namespace, partition, offset):
    """`_verdict` on the partition's Position in the cache now."""
    conn = reader.connection()
    return _verdict(
        cache.position(conn, namespace, partition) if conn else None, offset
    )


def _verdict(position, offset):
    """True once a partition's Position (or None) is past `offset`, False once it is
    revoked, None while neither: what a writer waiting for `offset` is told."""
    if position is None:
        return None
    if position.position > offset:
        return True
    return False if position.state == cache.REVOKED else None


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
