"""Per-key write serialisation across every gunicorn worker (process and thread) of one
instance.

Keys hash into buckets; a bucket is a 16-byte range of one lock file, locked with fcntl
(between processes) and a threading lock (between threads of a process, which fcntl does
not separate). The range also remembers the last record written under the bucket, so the
next writer can wait until the cache has applied it before checking a condition against
the cache.
"""

import contextlib
import fcntl
import os
import struct
import threading
import zlib

BUCKETS = 4096
SLOT = struct.Struct(">?HIQ")  # written?, namespace index, partition, offset
SLOT_SIZE = 16


def path_for(cache_path):
    """The lock file beside a cache file."""
    return cache_path.with_name(cache_path.name + ".locks")


class KeyLocks:
    def __init__(self, path, namespaces):
        self.path = path
        self.namespaces = list(namespaces)
        self._fd = None
        self._pid = None
        self._guard = threading.Lock()
        self._thread_locks = {}

    def _file(self):
        if self._pid != os.getpid():  # a forked worker needs its own descriptor
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            self._pid = os.getpid()
        return self._fd

    def _thread_lock(self, bucket):
        with self._guard:
            return self._thread_locks.setdefault(bucket, threading.Lock())

    @contextlib.contextmanager
    def hold(self, namespace, key):
        """Hold the key's bucket; yields a Slot whose `last` is (namespace, partition,
        offset) or None."""
        bucket = zlib.crc32(f"{namespace}\0{key}".encode()) % BUCKETS
        with self._thread_lock(bucket):
            fd = self._file()
            fcntl.lockf(fd, fcntl.LOCK_EX, SLOT_SIZE, bucket * SLOT_SIZE)
            try:
                yield _Slot(self, fd, bucket)
            finally:
                fcntl.lockf(fd, fcntl.LOCK_UN, SLOT_SIZE, bucket * SLOT_SIZE)

    def reset(self):
        """Forget every remembered write (the consumer does this at start, before
        anything is served)."""
        with open(self.path, "w"):
            pass


class _Slot:
    def __init__(self, locks, fd, bucket):
        self.locks, self.fd, self.offset = locks, fd, bucket * SLOT_SIZE

    @property
    def last(self):
        raw = os.pread(self.fd, SLOT.size, self.offset)
        if len(raw) < SLOT.size:
            return None
        written, namespace, partition, offset = SLOT.unpack(raw)
        return (
            (self.locks.namespaces[namespace], partition, offset) if written else None
        )

    def remember(self, namespace, partition, offset):
        os.pwrite(
            self.fd,
            SLOT.pack(True, self.locks.namespaces.index(namespace), partition, offset),
            self.offset,
        )
