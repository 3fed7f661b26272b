"""Wake-ups from the consumer to the waiting web processes (kvstore.wake), and the
watcher that turns them into wake-ups of waiting threads (kvstore.waiting): real
sockets and a real cache file, no Kafka needed."""

import os
import threading
import time

from kvstore import apply, cache, waiting, wake


def test_a_ring_wakes_a_listener_at_once(tmp_path):
    path = tmp_path / "cache.sqlite3"
    ear, bell = wake.Ear(path), wake.Bell(path)
    assert not ear.wait(0.05), "nothing rang"
    bell.ring()
    bell.ring()
    began = time.monotonic()
    assert ear.wait(1.0)
    assert time.monotonic() - began < 0.1
    assert not ear.wait(0.05), "both rings were taken at once"


def test_a_listener_that_is_gone_is_forgotten(tmp_path):
    path = tmp_path / "cache.sqlite3"
    directory = wake.directory_for(path)
    directory.mkdir()
    (directory / "999999999").touch()  # no such process listens
    wake.Bell(path).ring()
    assert os.listdir(directory) == []


def test_a_waiter_sees_a_move_that_came_between_its_look_and_its_wait(tmp_path):
    """The watcher may notice a move after a waiter looked at the cache and before it
    waits: the waiter's mark makes it return at once instead of sleeping through."""
    path = tmp_path / "cache.sqlite3"
    conn = cache.connect(path)
    writer = apply.Writer(conn)
    writer.start_restore("kv", 0, 0, 0, wipe=True)
    changes = waiting.Changes(cache.Reader(path))
    changes.wait(0.2)  # starts the watcher, which takes its first look
    mark = changes.seen
    apply.apply_batch(conn, {("kv", 0): ([], 5)})
    wake.Bell(path).ring()
    time.sleep(0.2)  # the watcher notices the move before the waiter waits
    began = time.monotonic()
    changes.wait(2.0, since=mark)
    assert time.monotonic() - began < 0.5


def test_a_waiter_is_woken_by_the_ring_not_by_polling(tmp_path, monkeypatch):
    monkeypatch.setattr(waiting, "FALLBACK", 5.0)  # no polling to speak of
    path = tmp_path / "cache.sqlite3"
    conn = cache.connect(path)
    apply.Writer(conn).start_restore("kv", 0, 0, 0, wipe=True)
    reader = cache.Reader(path)
    changes = waiting.Changes(reader)
    returned = []

    def wait():
        assert waiting.until_applied(reader, changes, "kv", 0, 9, 10.0)
        returned.append(time.monotonic())

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(0.3)  # waiting, and the watcher asleep on its ear
    applied_at = time.monotonic()
    apply.apply_batch(conn, {("kv", 0): ([], 10)})
    wake.Bell(path).ring()
    waiter.join(10)
    assert returned and returned[0] - applied_at < 1.0


def test_a_writer_is_woken_only_by_its_own_partition_reaching_its_offset(
    tmp_path, monkeypatch
):
    """A wake-up per consumer transaction wakes the one writer it concerns, not every
    writer of the process: a writer waiting for offset 9 of partition 0 sleeps through
    moves of partition 1 and through partition 0 reaching 5, and wakes at 10, or when
    its partition is revoked."""
    monkeypatch.setattr(waiting, "FALLBACK", 5.0)  # no polling to speak of
    path = tmp_path / "cache.sqlite3"
    conn = cache.connect(path)
    writer = apply.Writer(conn)
    writer.start_restore("kv", 0, 0, 0, wipe=True)
    writer.start_restore("kv", 1, 0, 0, wipe=True)
    changes, bell = waiting.Changes(cache.Reader(path)), wake.Bell(path)

    reached = changes.awaiting("kv", 0, 9)
    time.sleep(0.2)  # the watcher takes its first look
    assert not reached.is_set()
    apply.apply_batch(conn, {("kv", 1): ([], 20)})
    bell.ring()
    assert not reached.wait(0.3), "woken by another partition's move"
    apply.apply_batch(conn, {("kv", 0): ([], 5)})
    bell.ring()
    assert not reached.wait(0.3), "woken before its offset was applied"
    apply.apply_batch(conn, {("kv", 0): ([], 10)})
    bell.ring()
    assert reached.wait(1.0)
    changes.done("kv", 0, reached)

    reached = changes.awaiting("kv", 1, 50)
    time.sleep(0.1)
    assert not reached.is_set()
    writer.revoke([("kv", 1)])
    bell.ring()
    assert reached.wait(1.0), "not woken by the revocation"
    changes.done("kv", 1, reached)
    assert changes._targets == {}, "a finished wait stays registered"


def test_a_move_between_a_writers_look_and_its_wait_is_not_missed(tmp_path):
    """until_applied registers before its look: a move the watcher sees between the
    look and the wait sets the event, so the wait returns at once."""
    path = tmp_path / "cache.sqlite3"
    conn = cache.connect(path)
    apply.Writer(conn).start_restore("kv", 0, 0, 0, wipe=True)
    changes = waiting.Changes(cache.Reader(path))
    reached = changes.awaiting("kv", 0, 3)
    reached.clear()
    time.sleep(0.2)  # the look would be here; then the move, then the wait
    apply.apply_batch(conn, {("kv", 0): ([], 4)})
    wake.Bell(path).ring()
    time.sleep(0.2)
    began = time.monotonic()
    assert reached.wait(2.0)
    assert time.monotonic() - began < 0.1
    changes.done("kv", 0, reached)
