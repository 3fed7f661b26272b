"""The consistency checker's analysis on synthetic histories: the log's replay rules, a
clean history that passes, and one history per violation kind that the checker must
see."""

import http.server
import io
import json
import re
import threading

import pytest
import requests
from django.core.management import CommandError, call_command

from kvstore.checker import analysis, history, report, workload
from kvstore.checker.history import FinalRead, History, Op, Record
from kvstore.checker.replay import holds, parse_version, replay
from kvstore.partitioner import partition_for
from tests.brokers import free_port


class Build:
    """A synthetic history: operations on a timeline, the topic's records, final
    reads."""

    def __init__(self, keys=("k",)):
        self.history = History(meta={"keys": list(keys)})

    def write(self, op_id, start, end, status, etag=None, key="k", **fields):
        op = Op(op_id, "write", key, 0, "http://a", start, end, status, etag=etag)
        op.value_op = op_id
        for name, value in fields.items():
            setattr(op, name, value)
        self.history.record(op)
        return self

    def read(self, op_id, start, end, status, etag=None, value_op=None, key="k"):
        op = Op(op_id, "read", key, 1, "http://b", start, end, status, etag=etag)
        op.value_op = value_op
        self.history.record(op)
        return self

    def record(self, offset, op_id, key="k", partition=0, tombstone=False, **headers):
        value = None if tombstone else json.dumps({"n": 1, "op": op_id})
        headers = {name.replace("_", "-"): text for name, text in headers.items()}
        self.history.add_records([Record(partition, offset, key, value, headers)])
        return self

    def final(self, status, etag=None, value_op=None, key="k"):
        """The key's final read (replacing an earlier one)."""
        finals = self.history.finals
        finals[:] = [final for final in finals if final.key != key]
        self.history.add_finals([FinalRead(key, status, etag, value_op)])
        return self

    def findings(self, **options):
        return analysis.analyze(self.history, **options)


def clean():
    """Creates, a compare-and-set, a read of each version, a 503 that wrote nothing, a
    412 whose record the log rejected (and its re-assert), a 504 that did land."""
    return (
        Build()
        .write("w1", 0.0, 1.0, 201, "0-0", if_match="absent")
        .read("r1", 1.5, 2.0, 200, "0-0", "w1")
        .write("w2", 2.0, 3.0, 200, "0-1", if_match="0-0")
        .write("w3", 2.1, 3.1, 412, if_match="0-0", code="precondition_failed")
        .write("w4", 3.5, 4.0, 503, code="store_unavailable")
        .read("r2", 4.5, 5.0, 200, "0-3", "w2")
        .write("w5", 5.0, 7.0, 504, code="write_outcome_unknown")
        .read("r3", 7.5, 8.0, 200, "0-4", "w5")
        .record(0, "w1", kvstore_if="absent")
        .record(1, "w2", kvstore_if="0-0")
        .record(2, "w3", kvstore_if="0-0")
        .record(3, "w2", kvstore_if="0-1", kvstore_reassert="1")
        .record(4, "w5")
        .final(200, "0-4", "w5")
    )


def test_a_conditional_record_takes_effect_only_on_the_version_it_names():
    assert holds(None, None) and holds(None, (0, 3))
    assert holds("absent", None) and not holds("absent", (0, 1))
    assert holds("0-3", (0, 3)) and holds('"0-3"', (0, 3))
    assert not holds("0-3", (0, 4)) and not holds("0-3", None)
    assert parse_version('"2-17"') == (2, 17) and parse_version("x") is None


def test_the_replay_follows_conditions_re_asserts_and_tombstones():
    records = (
        Build()
        .record(0, "a", kvstore_if="absent")
        .record(1, "b", kvstore_if="absent")  # exists: rejected
        .record(2, "a", kvstore_if="0-0", kvstore_reassert="1")
        .record(3, None, tombstone=True)
        .record(4, "c", kvstore_if="0-2")  # deleted since: rejected
        .record(5, "d", kvstore_if="absent")
        .history.records
    )
    log = replay(records, {"k"})
    assert [r.offset for r in log.effective["k"]] == [0, 2, 3, 5]
    assert not log.by_version[(0, 1)].effect and not log.by_version[(0, 4)].effect
    assert log.final["k"].op == "d" and log.final["k"].version == (0, 5)
    assert [r.offset for r in log.by_op["a"]] == [0], "a re-assert is not a write of a"
    assert log.tombstone_since("k", 3) and not log.tombstone_since("k", 4)


def test_a_clean_history_passes():
    built = clean()
    findings = built.findings()
    assert findings.violations == 0, findings.examples
    assert findings.notes["unknown write: took effect"] == 1
    result = report.verdict(built.history, findings)
    assert result.ok and "PASS" in report.render(result)


@pytest.mark.parametrize(
    "change, kind",
    [
        # An acknowledged write whose version is not in the topic.
        (lambda b: b.write("x", 8, 9, 200, "0-9", if_match="0-4"), "lost_ack"),
        # An acknowledged write whose record the log rejected.
        (
            lambda b: b.write("x", 8, 9, 200, "0-5", if_match="0-1").record(
                5, "x", kvstore_if="0-1"
            ),
            "lost_ack",
        ),
        # A 202 says durable: its record must be there.
        (
            lambda b: b.write("x", 8, 9, 202, "0-7", code="accepted_not_applied"),
            "lost_ack",
        ),
        # A read that started after w2 was acknowledged returns w1's version.
        (lambda b: b.read("x", 3.2, 3.4, 200, "0-0", "w1"), "stale_read"),
        # A 404 after the key was acknowledged.
        (lambda b: b.read("x", 1.1, 1.2, 404), "false_404"),
        # A 503 whose value is in the topic.
        (
            lambda b: b.write("x", 8, 9, 503, code="store_unavailable")
            .record(5, "x")
            .final(200, "0-5", "x"),
            "phantom",
        ),
        # A 412 whose record took effect.
        (
            lambda b: b.write("x", 8, 9, 412, if_match="0-4")
            .record(5, "x", kvstore_if="0-4")
            .final(200, "0-5", "x"),
            "rejected_applied",
        ),
        # A read older than another read that completed before it started.
        (lambda b: b.read("x", 5.1, 5.2, 200, "0-1", "w2"), "read_regression"),
        # A read of the rejected record's value.
        (lambda b: b.read("x", 3.2, 3.4, 200, "0-2", "w3"), "invalid_read"),
        # A read whose value is not the one at its version.
        (lambda b: b.read("x", 3.2, 3.4, 200, "0-1", "w1"), "invalid_read"),
        # Connection refused at the owner a 307 named.
        (
            lambda b: b.write("x", 8, 9, None, error="refused", hops=1),
            "redirect_refused",
        ),
    ],
)
def test_each_violation_is_seen(change, kind):
    findings = change(clean()).findings()
    assert findings.counts == {kind: 1}, findings.examples
    assert len(findings.examples[kind]) == 1 and " x " in findings.examples[kind][0]


def test_two_acknowledged_writes_on_one_if_match_are_a_double_cas():
    """As a deposed owner that judged the condition on its own stale cache would make
    them: both records unconditional, both took effect, one update lost."""
    built = (
        clean()
        .write("x", 2.5, 3.2, 200, "0-5", if_match="0-0")
        .record(5, "x")
        .final(200, "0-5", "x")
    )
    built.history.ops[:] = [op for op in built.history.ops if op.start < 3.2]
    findings = built.findings()
    assert findings.counts == {"double_cas": 1, "lost_update": 1}, findings.examples
    assert "w2 was also acknowledged" in findings.examples["double_cas"][0]
    assert "on 0-4" in findings.examples["lost_update"][0]


@pytest.mark.parametrize("status", [202, 504, None])
def test_a_conditional_write_that_landed_on_another_version_is_a_lost_update(status):
    """A deposed owner judged If-Match on its stale cache and wrote an unconditional
    record: whatever it answered, the update it based on is lost."""
    built = (
        clean()
        .write("x", 8, 9, status, "0-5" if status else None, if_match="0-1")
        .record(5, "x")
        .final(200, "0-5", "x")
    )
    findings = built.findings()
    assert findings.counts == {"lost_update": 1}, findings.examples
    assert "took effect at 0-5 on 0-4" in findings.examples["lost_update"][0]


def test_a_final_state_that_differs_from_the_log_is_a_violation():
    built = clean()
    built.final(200, "0-1", "w2")
    assert built.findings().counts == {"final_state": 1}
    built.final(503)
    assert built.findings().counts == {"final_state": 1}


def test_a_404_after_an_acknowledged_delete_is_not_false():
    built = (
        clean()
        .write("d", 8, 9, 204, "0-5")
        .record(5, "d", tombstone=True)
        .read("x", 9.5, 9.6, 404)
    )
    built.history.ops[-2].value_op = None  # a delete stores no value
    built.final(404)
    findings = built.findings()
    assert "false_404" not in findings.counts and "final_state" not in findings.counts


def test_unverifiable_versions_are_notes_when_compaction_may_have_run():
    built = clean().write("x", 8, 9, 200, "0-9", if_match="0-4")
    assert built.findings().counts == {"lost_ack": 1}
    relaxed = built.findings(compaction_possible=True)
    assert relaxed.violations == 0
    assert relaxed.notes["acknowledged version not verifiable (compaction)"] == 1


def test_fault_figures_measure_unavailability_and_recovery():
    built = clean()
    fault = built.history.fault("pause", 3.4)
    built.history.healed(fault, 6.0)
    built.write("x", 6.2, 6.9, 503, code="partition_moving")
    figures = report.verdict(built.history, built.findings()).faults[0]
    assert figures.ops == 3 and figures.unavailable == 1 and figures.unknown == 1
    assert figures.recovery_s == pytest.approx(0.9)
    assert figures.write_recovery_s == pytest.approx(0.9)
    assert figures.seconds_with_503 == 2  # the one during the fault, the one after


def test_a_history_file_reads_back_the_same(tmp_path):
    path = tmp_path / "history.jsonl"
    built = clean()
    recorded = History(path, built.history.meta)
    for op in built.history.ops:
        recorded.record(op)
    recorded.add_records(built.history.records)
    recorded.add_finals(built.history.finals)
    fault = recorded.fault("kill", 1.0, "node 2")
    recorded.healed(fault, 2.0)
    recorded.close()
    loaded = history.load(path)
    assert loaded.ops == built.history.ops and loaded.records == built.history.records
    assert loaded.faults[0].detail == "node 2" and loaded.meta == {"keys": ["k"]}
    assert analysis.analyze(loaded).violations == 0


def test_the_command_judges_a_saved_history_and_exits_1_on_a_violation(tmp_path):
    path = tmp_path / "history.jsonl"
    built = clean().read("x", 3.2, 3.4, 200, "0-0", "w1")  # a stale read
    saved = History(path, built.history.meta)
    for op in built.history.ops:
        saved.record(op)
    saved.add_records(built.history.records)
    saved.add_finals(built.history.finals)
    saved.close()
    out = io.StringIO()
    with pytest.raises(CommandError) as failed:
        call_command("kvstore_check", analyze=str(path), stdout=out)
    assert failed.value.returncode == 1 and "1 consistency violation" in str(
        failed.value
    )
    assert re.search(r"stale_read +1 ", out.getvalue()) and "FAIL" in out.getvalue()


def test_a_202_without_its_version_must_still_be_in_the_topic():
    durable = clean().write("x", 8, 9, 202, code="accepted_undecided", if_match="0-4")
    assert durable.findings().counts == {"lost_ack": 1}
    durable.record(5, "x", kvstore_if="0-3")  # there, and rejected: undecided is fine
    assert durable.findings().violations == 0


class _Redirecting(http.server.BaseHTTPRequestHandler):
    """307 to the server's `target` + the same path, for every GET."""

    def do_GET(self):
        self.send_response(307)
        self.send_header("Location", self.server.target + self.path)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def redirector():
    """start(target) -> (URL, server) of a server that redirects everything to
    `target` (the server's `target` may change)."""
    servers = []

    def start(target):
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Redirecting)
        server.target = target
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}", server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_a_client_follows_at_most_two_redirects(redirector):
    first, first_server = redirector(None)
    second, _ = redirector(first)
    first_server.target = second
    with requests.Session() as session:
        answer = workload.send(session, "GET", first + "/api/kv/k", timeout=5)
    # first → second → first: the third answer is the one recorded.
    assert answer.status == 307 and answer.hops == 2 and answer.served_by == first


def test_a_refusal_after_a_redirect_is_its_own_kind(redirector):
    nowhere = f"http://127.0.0.1:{free_port()}"
    with requests.Session() as session:
        answer = workload.send(
            session, "GET", redirector(nowhere)[0] + "/api/kv/k", timeout=5
        )
    assert answer.error == "refused" and answer.hops == 1
    op = Op("x", "read", "k", 0, "http://a", error=answer.error, hops=answer.hops)
    assert op.refused_after_redirect and op.outcome == history.UNKNOWN


def test_keys_cover_every_partition_and_more_join_over_time():
    plan = workload.KeyPlan("run", partitions=6, per_partition=2, fresh_every=3.0)
    assert sorted(partition_for(k, 6) for k in plan.initial) == sorted(
        list(range(6)) * 2
    )
    assert plan.active(0) == plan.initial and len(plan.active(7.0)) == 12 + 2
    assert [partition_for(k, 6) for k in plan.fresh[:6]] == list(range(6))
    assert len(set(plan.keys)) == len(plan.keys) == 6 * (2 + 4)
