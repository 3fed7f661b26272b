"""Per-key write serialisation across every gunicorn worker (process and thread) of one
instance.

Keys hash into buckets; a bucket is a 16-byte range of one lock file, locked with an
open-file-description lock (between processes) and a threading lock (between threads of
a process, which share the description). The range also remembers the last record
written under the bucket, so the next writer can wait until the cache has applied it
before checking a condition against the cache.
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
# struct flock on Linux: l_type, l_whence, l_start, l_len, l_pid (0 for OFD locks).
FLOCK = struct.Struct("hhqqi4x")


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
            _lock(fd, fcntl.F_WRLCK, bucket)
            try:
                yield _Slot(self, fd, bucket)
            finally:
                _lock(fd, fcntl.F_UNLCK, bucket)

    def reset(self):
        """Forget every remembered write (the consumer does this at start, before
        anything is served)."""
        with open(self.path, "w"):
            pass


def _lock(fd, kind, bucket):
    """Lock or unlock a bucket's range, waiting for it. Not POSIX record locks
    (lockf): those belong to the process, and the kernel's deadlock check, blind to
    threads, refuses a wait (EDEADLK) when a thread of process A waits for B while a
    thread of B waits for another bucket A holds, though no thread ever holds two."""
    flock = FLOCK.pack(kind, os.SEEK_SET, bucket * SLOT_SIZE, SLOT_SIZE, 0)
    fcntl.fcntl(fd, fcntl.F_OFD_SETLKW, flock)


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
