"""Wake-ups from the consumer process to the web processes waiting on the cache: after
each transaction that moves a partition (records applied, a partition taken in, made
ready or revoked), the consumer sends a datagram to every web process that listens, so
a waiting writer or reader looks at the cache at once instead of polling it.

A wake-up says only "look again": the cache stays the one truth, a lost datagram costs
a waiter at most its fallback timeout, and anyone on the machine who could send one can
make a waiter look again, nothing more. The web processes listen on Linux abstract
Unix sockets (no file to clean up, no path-length limit), named after the cache file
and the process id; each registers its pid as an empty file in a directory beside the
cache, which is how the consumer finds them.
"""

import hashlib
import os
import select
import socket
import time

LIST_EVERY = 1.0  # the consumer looks for new listeners at most this often


def directory_for(cache_path):
    return cache_path.with_name(cache_path.name + ".wake")


def _address(cache_path, pid):
    digest = hashlib.sha1(str(cache_path).encode()).hexdigest()[:16]
    return f"\0kvstore-{digest}-{pid}".encode()


class Bell:
    """The consumer's side: `ring()` after each transaction."""

    def __init__(self, cache_path):
        self.cache_path = cache_path
        self.directory = directory_for(cache_path)
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.setblocking(False)
        self._pids, self._listed = [], 0.0

    def ring(self):
        for pid in self._listeners():
            try:
                self._socket.sendto(b"!", _address(self.cache_path, pid))
            except BlockingIOError:
                pass  # its queue is full: it has wake-ups waiting already
            except (ConnectionRefusedError, FileNotFoundError):
                self._forget(pid)  # that process is gone

    def _listeners(self):
        now = time.monotonic()
        if now - self._listed >= LIST_EVERY:
            try:
                self._pids = [int(name) for name in os.listdir(self.directory)]
            except (FileNotFoundError, ValueError):
                self._pids = []
            self._listed = now
        return self._pids

    def _forget(self, pid):
        self._pids = [p for p in self._pids if p != pid]
        try:
            os.unlink(self.directory / str(pid))
        except FileNotFoundError:
            pass

    def close(self):
        self._socket.close()


class Ear:
    """A web process's side: `wait(timeout)` returns on a wake-up or after `timeout`."""

    def __init__(self, cache_path):
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.bind(_address(cache_path, os.getpid()))
        self._socket.setblocking(False)
        directory = directory_for(cache_path)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / str(os.getpid())).touch()

    def wait(self, timeout):
        """Whether a wake-up came within `timeout` seconds (all pending ones are
        taken: one look at the cache answers them all)."""
        ready, _, _ = select.select([self._socket], [], [], max(timeout, 0))
        if not ready:
            return False
        while True:
            try:
                self._socket.recv(64)
            except BlockingIOError:
                return True
