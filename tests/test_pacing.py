"""When the consumer's fetches wait at the broker for more records (kvstore.pacing): the
decision on a fake clock, and kafka-python's fetcher honouring it against a real broker.
"""

import time

from kvstore import log, pacing, topics
from tests import rawlog


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def run(pace, clock, seconds, polls_per_second, records_per_poll):
    """Feed `seconds` of polls; the decisions made, in order."""
    decisions = []
    for _ in range(int(seconds * polls_per_second)):
        clock.now += 1 / polls_per_second
        decided = pace.observe(records_per_poll)
        if decided is not None:
            decisions.append(decided)
    return decisions


def test_a_lone_writer_never_makes_fetches_wait():
    clock = Clock()
    pace = pacing.FetchPacing(clock)
    assert run(pace, clock, 5, 400, 1) == []  # 400 writes/s, one per poll
    assert not pace.batching


def test_concurrent_writes_make_fetches_wait_and_a_lone_writer_after_them_does_not():
    clock = Clock()
    pace = pacing.FetchPacing(clock)
    assert run(pace, clock, 1.5, 200, 4) == [True]  # 800 writes/s, 4 per poll
    # Near the edge it goes on batching rather than flipping every second.
    assert run(pace, clock, 3, 200, 1.8) == []
    assert run(pace, clock, 2, 400, 1) == [False]


def test_records_at_a_trickle_do_not_make_fetches_wait():
    clock = Clock()
    pace = pacing.FetchPacing(clock)
    assert run(pace, clock, 3, 10, 5) == []  # 50 records/s, however grouped


def test_fetches_return_at_once_again_when_writes_stop():
    clock = Clock()
    pace = pacing.FetchPacing(clock)
    assert run(pace, clock, 1.5, 100, 10) == [True]
    assert run(pace, clock, 2, 10, 0) == [False]  # empty polls


def first_record_after(group, writer, partition):
    """Seconds from writing one record until the member's poll returns it."""
    writer.write([("k", "1")], partition=partition)
    began = time.monotonic()
    while not group.poll(50):
        assert time.monotonic() - began < 10, "the record never came"
    return time.monotonic() - began


def test_kafka_python_fetches_as_the_pacing_says(store_settings):
    """GroupConsumer.batch_fetches and fetch_at_once change kafka-python's fetcher
    settings in place: a fetch told to wait for more than one record holds a lone
    record until its wait ends, and one told to return at once does not (a
    kafka-python that copied them would fail this)."""
    with log.admin(store_settings) as admin:
        topics.ensure(admin, store_settings)
    topic = store_settings.topics()["kv"]
    group = log.GroupConsumer(
        store_settings,
        {topic: "kv"},
        store_settings.session_timeout_ms,
        on_revoke=lambda partitions: None,
    )
    try:
        began = time.monotonic()
        while not group.generation():
            group.poll(100)
            assert time.monotonic() - began < 60, "never assigned"
        with rawlog.Writer(store_settings.bootstrap_servers, topic) as writer:
            assert first_record_after(group, writer, 0) < 0.5
            group.batch_fetches(wait_ms=1500, min_bytes=10**6)
            time.sleep(0.3)  # the fetch sent before the change returns
            assert first_record_after(group, writer, 1) >= 1.0
            group.fetch_at_once()
            time.sleep(1.7)  # the waiting fetch sent before the change returns
            assert first_record_after(group, writer, 2) < 0.5
    finally:
        group.abandon()
