"""Key validation and the per-key locks that serialise writers across processes."""

import multiprocessing
import threading
import time

import pytest

from kvstore.errors import InvalidKey
from kvstore.locks import KeyLocks
from kvstore.routing import validate_key


@pytest.mark.parametrize(
    "key", ["", "x" * 256, "é" * 128, "a\x00b", "line\nbreak", "del\x7f"]
)
def test_bad_keys(key):
    with pytest.raises(InvalidKey):
        validate_key(key)


@pytest.mark.parametrize(
    "key", ["k", "x" * 255, "é" * 127, "with space", "ünïcødé-😀", "a.b:c@d"]
)
def test_good_keys(key):
    validate_key(key)


def _hold(path, started, results, index):
    locks = KeyLocks(path, ["kv"])
    started.wait()
    with locks.hold("kv", "same") as slot:
        before = slot.last
        time.sleep(0.05)
        slot.remember("kv", 0, (before[2] + 1) if before else 0)
    results.put(index)


def test_a_key_lock_excludes_other_processes(tmp_path):
    path = tmp_path / "locks"
    started, results = multiprocessing.Event(), multiprocessing.Queue()
    workers = [
        multiprocessing.Process(target=_hold, args=(path, started, results, i))
        for i in range(4)
    ]
    for worker in workers:
        worker.start()
    started.set()
    for worker in workers:
        worker.join(10)
    with KeyLocks(path, ["kv"]).hold("kv", "same") as slot:
        assert slot.last == (
            "kv",
            0,
            3,
        ), "each holder saw the previous one's write: no two held it at once"


def test_reset_forgets_remembered_writes(tmp_path):
    locks = KeyLocks(tmp_path / "locks", ["kv", "users"])
    with locks.hold("users", "k") as slot:
        slot.remember("users", 2, 99)
    with locks.hold("users", "k") as slot:
        assert slot.last == ("users", 2, 99)
    locks.reset()
    with locks.hold("users", "k") as slot:
        assert slot.last is None


def _cross(path, mine, theirs, holding, waiting, errors):
    """One process: a thread holds `mine` for a while; meanwhile another thread asks
    for `theirs`, which the other process holds."""
    locks = KeyLocks(path, ["kv"])

    def hold():
        with locks.hold("kv", mine):
            holding.wait()
            time.sleep(0.5)

    def ask():
        holding.wait()
        waiting.wait()
        try:
            with locks.hold("kv", theirs):
                pass
        except OSError as exc:
            errors.put(repr(exc))

    threads = [threading.Thread(target=hold), threading.Thread(target=ask)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_threads_of_two_processes_waiting_crosswise_are_no_deadlock(tmp_path):
    """Process A's thread waits for a bucket B holds while B's thread waits for one A
    holds: no thread holds two buckets, so both must get theirs (POSIX record locks
    refuse one with EDEADLK)."""
    path = tmp_path / "locks"
    holding = multiprocessing.Barrier(2)
    waiting, errors = multiprocessing.Barrier(2), multiprocessing.Queue()
    first, second = "key-a", "key-b"
    processes = [
        multiprocessing.Process(
            target=_cross, args=(path, mine, theirs, holding, waiting, errors)
        )
        for mine, theirs in ((first, second), (second, first))
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(10)
    assert [p.exitcode for p in processes] == [0, 0]
    assert errors.empty(), errors.get()
