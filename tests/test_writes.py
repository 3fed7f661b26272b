"""Write health of the web workers: the breaker that lets one write at a time probe a
failing Kafka, and the file /readyz reads (pure logic; the outage itself is shown
against real brokers in tests/test_safety.py and tests/test_faults.py)."""

import time

from kvstore import writes


def test_while_writes_fail_one_probe_at_a_time_goes_through(tmp_path):
    breaker = writes.Breaker(tmp_path / "health")
    assert breaker.attempt() is not None
    breaker.failed()
    probe = breaker.attempt()
    assert probe is not None and probe.probe
    with probe:
        assert breaker.attempt() is None, "others are refused while one probes"
    breaker.succeeded()
    assert breaker.attempt() is not None and not breaker.open


def test_readiness_sees_failing_writes_until_one_succeeds(tmp_path):
    breaker = writes.Breaker(tmp_path / "health")
    health = writes.Health(tmp_path / "health")
    breaker.failed()
    since = health.failing_since(recent=5)
    assert since is not None
    breaker.failed()
    assert health.failing_since(recent=5) == since, "since the first failure"
    breaker.succeeded()
    assert health.failing_since(recent=5) is None


def test_a_failure_long_past_with_no_write_since_is_no_evidence(tmp_path):
    """After an outage a worker that got no write since must not keep /readyz at 503
    for ever (it did, after a broker kill, while nobody wrote)."""
    writes.Breaker(tmp_path / "health").failed()
    health = writes.Health(tmp_path / "health")
    later = time.time() + 10
    assert health.failing_since(recent=5, now=later) is None
    assert health.failing_since(now=later) is not None


def test_dead_workers_do_not_count(tmp_path):
    writes.Breaker(tmp_path / "health").failed()
    health = writes.Health(tmp_path / "health")
    assert health.failing_since(alive=lambda pid: False) is None


def test_end_offsets_are_asked_one_at_a_time_and_shared_only_when_fresh():
    """Callers that asked before a request was sent share its answer; one that asked
    while it was in flight gets a new one (the first may miss what came meanwhile)."""
    import threading

    from kvstore.ends import EndOffsets

    sent, release, now = [], threading.Event(), [0.0]

    def ask(topic, partition):
        sent.append(now[0])
        release.wait(5)
        return 100 + len(sent)

    ends = EndOffsets(ask, clock=lambda: now[0])
    results = []
    first = threading.Thread(target=lambda: results.append(ends.get("t", 0)))
    first.start()
    while not sent:
        time.sleep(0.01)
    now[0] = 1.0  # these ask while the first request is in flight
    later = [
        threading.Thread(target=lambda: results.append(ends.get("t", 0)))
        for _ in range(5)
    ]
    for thread in later:
        thread.start()
    time.sleep(0.1)
    now[0] = 2.0
    release.set()
    for thread in [first, *later]:
        thread.join(5)
    assert len(sent) == 2, "the first request, and one for all who asked during it"
    assert sorted(results) == [101, 102, 102, 102, 102, 102]
