"""The checks: each client operation of a history held against the log's replay.

A violation is counted under one kind, with examples. Versions of a key all live in
its partition, so "older" compares offsets. An acknowledged write (200/201/204) sets a
floor for every read that starts after it completed; so does a read of a version that
took effect.
"""

import bisect
import collections
import dataclasses

from kvstore.checker import history as h
from kvstore.checker.replay import ABSENT, parse_version, replay

KINDS = {
    "lost_ack": "an acknowledged write (or a 202's durable record) missing from the "
    "topic, or that did not take effect",
    "stale_read": "a read older than a write acknowledged before it started",
    "false_404": "a 404 for a key that had a write acknowledged (or read) before the "
    "read started",
    "double_cas": "two acknowledged writes with the same If-Match on one key",
    "lost_update": "a conditional write that took effect in the log on another version "
    "than its If-Match",
    "phantom": "a 503 ('nothing written') whose value is in the topic",
    "rejected_applied": "a 412 whose record took effect in the log",
    "final_state": "after the run, a strong read that differs from the log's final "
    "state",
    "read_regression": "a read older than a version another read returned before it "
    "started",
    "invalid_read": "a read of a version the log never gave the key (or another value)",
    "redirect_refused": "connection refused at the owner a 307 named",
}
EXAMPLES = 5


@dataclasses.dataclass
class Findings:
    """Violations by kind (with up to EXAMPLES examples each) and informational
    notes."""

    counts: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    examples: dict = dataclasses.field(default_factory=dict)
    notes: collections.Counter = dataclasses.field(default_factory=collections.Counter)

    def add(self, kind, example):
        self.counts[kind] += 1
        shown = self.examples.setdefault(kind, [])
        if len(shown) < EXAMPLES:
            shown.append(example)

    @property
    def violations(self):
        return sum(self.counts.values())


def analyze(history, compaction_possible=False):
    """Findings of `history` (ops, final reads and topic records). With
    `compaction_possible`, a version missing from the topic is only a note, since
    compaction may have removed it."""
    keys = set(history.meta.get("keys") or {op.key for op in history.ops})
    log = replay(history.records, keys)
    t0 = min((op.start for op in history.ops), default=0.0)
    check = _Checks(log, Findings(), t0, compaction_possible)
    writes = [op for op in history.ops if op.kind == "write"]
    reads = [op for op in history.ops if op.kind == "read"]
    for op in writes:
        check.write(op)
    check.double_cas(writes)
    check.reads(reads, writes)
    check.final(history.finals)
    for op in history.ops:
        if op.refused_after_redirect:
            check.found.add("redirect_refused", check.describe(op))
    return check.found


class _Checks:
    def __init__(self, log, found, t0, compaction_possible):
        self.log, self.found, self.t0 = log, found, t0
        self.compaction_possible = compaction_possible

    def describe(self, op, why=""):
        answer = op.status if op.status is not None else op.error
        where = f"{op.instance}" + (f"→{op.served_by}" if op.hops else "")
        text = (
            f"{op.kind} {op.id} key={op.key} at {op.start - self.t0:.2f}"
            f"–{op.end - self.t0:.2f}s via {where}: {answer}"
            + (f" {op.code}" if op.code else "")
            + (f" etag={op.etag}" if op.etag else "")
            + (f" if-match={op.if_match}" if op.if_match else "")
        )
        return f"{text} ({why})" if why else text

    # Writes

    def write(self, op):
        outcome, records = op.outcome, self.log.by_op.get(op.id, [])
        if len(records) > 1:
            self.found.notes["a write's value appears in several records"] += 1
        if outcome in (h.ACKED, h.ACCEPTED):
            self._durable(op, require_effect=outcome == h.ACKED)
        elif outcome == h.NOTHING and records:
            where = ", ".join(f"{r.partition}-{r.offset}" for r in records)
            self.found.add("phantom", self.describe(op, f"in the topic at {where}"))
        elif outcome == h.REJECTED and any(r.effect for r in records):
            self.found.add("rejected_applied", self.describe(op, "took effect"))
        if op.if_match and outcome != h.REJECTED:
            self._condition_held(op, records)
        if outcome in (h.UNKNOWN, h.ACCEPTED):
            landed = (
                "took effect"
                if any(r.effect for r in records)
                else ("rejected by the log" if records else "not in the topic")
            )
            self.found.notes[f"{outcome} write: {landed}"] += 1

    def _condition_held(self, op, records):
        """A conditional write that took effect must have found its If-Match version
        current in the log (whatever its answer said)."""
        wanted = None if op.if_match == ABSENT else parse_version(op.if_match)
        for record in records:
            if record.effect and record.previous != wanted:
                found = (
                    "absent" if record.previous is None else "%d-%d" % record.previous
                )
                why = f"took effect at {record.partition}-{record.offset} on {found}"
                self.found.add("lost_update", self.describe(op, why))

    def _durable(self, op, require_effect):
        version = parse_version(op.etag)
        record = self.log.by_version.get(version) if version else None
        if record is None and version is None and not require_effect:
            # A 202 without its version: its value must still be durable.
            if not self.log.by_op.get(op.id):
                self.found.add("lost_ack", self.describe(op, "not in the topic"))
            return
        if record is None:
            if version and self.compaction_possible:
                self.found.notes[
                    "acknowledged version not verifiable (compaction)"
                ] += 1
                return
            why = "no ETag" if version is None else "its version is not in the topic"
            self.found.add("lost_ack", self.describe(op, why))
        elif record.key != op.key or record.op != op.value_op:
            self.found.add(
                "lost_ack", self.describe(op, f"the record there is {record.op}")
            )
        elif require_effect and not record.effect:
            self.found.add("lost_ack", self.describe(op, "rejected by the log"))

    def double_cas(self, writes):
        groups = collections.defaultdict(list)
        for op in writes:
            if op.if_match and op.outcome == h.ACKED:
                groups[(op.key, op.if_match)].append(op)
        for (key, if_match), ops in groups.items():
            deleted = any(r.tombstone for r in self.log.effective.get(key, ()))
            if len(ops) < 2 or (if_match == ABSENT and deleted):
                continue
            first, *others = sorted(ops, key=lambda o: o.start)
            for op in others:
                self.found.add(
                    "double_cas", self.describe(op, f"{first.id} was also acknowledged")
                )

    # Reads

    def reads(self, reads, writes):
        by_key = collections.defaultdict(list)
        for op in writes:
            version = parse_version(op.etag)
            if op.outcome == h.ACKED and version:
                by_key[op.key].append((op.end, version, op))
        write_floors = {key: _Floors(items) for key, items in by_key.items()}
        observed = collections.defaultdict(list)
        for op in reads:
            version = parse_version(op.etag) if op.status == 200 else None
            if version and self._valid_read(op, version):
                observed[op.key].append((op.end, version, op))
        read_floors = {key: _Floors(items) for key, items in observed.items()}
        for op in reads:
            if op.status in (200, 404):
                self._read(op, write_floors.get(op.key), read_floors.get(op.key))

    def _valid_read(self, op, version, report=False):
        record = self.log.by_version.get(version)
        if record is None and self.compaction_possible:
            return False
        valid = (
            record is not None
            and record.key == op.key
            and record.effect
            and record.op == op.value_op
        )
        if not valid and report:
            why = (
                "not in the topic"
                if record is None
                else ("did not take effect" if not record.effect else "another value")
            )
            self.found.add("invalid_read", self.describe(op, why))
        return valid

    def _read(self, op, write_floor, read_floor):
        written = write_floor.before(op.start) if write_floor else None
        seen = read_floor.before(op.start) if read_floor else None
        if op.status == 404:
            floor = max((f for f in (written, seen) if f), default=None)
            if floor and not self.log.tombstone_since(op.key, floor[0][1]):
                why = f"{floor[1].id} had {floor[1].etag} before"
                self.found.add("false_404", self.describe(op, why))
            return
        version = parse_version(op.etag)
        if version is None:
            self.found.add("invalid_read", self.describe(op, "200 without an ETag"))
            return
        self._valid_read(op, version, report=True)
        if written and version < written[0]:
            why = f"{written[1].id} acknowledged {written[1].etag} before it started"
            self.found.add("stale_read", self.describe(op, why))
        elif seen and version < seen[0]:
            why = f"{seen[1].id} had read {seen[1].etag} before it started"
            self.found.add("read_regression", self.describe(op, why))

    # After the run

    def final(self, finals):
        """Every key read after the run, and every key the log holds records of, must
        read as the log's final state."""
        answers = {final.key: final for final in finals}
        if not answers:
            return
        for key in sorted(set(answers) | set(self.log.effective)):
            why = final_mismatch(key, answers.get(key), self.log.final.get(key))
            if why:
                self.found.add("final_state", why)


def final_mismatch(key, got, expected):
    """Why the final read `got` (FinalRead or None) differs from the log's final
    Replayed `expected` (None: absent), or None when they agree."""
    if got is None:
        return f"key={key}: not read after the run"
    said = f"{got.status} {got.etag or got.code or ''}"
    if expected is None:
        return (
            None
            if got.status == 404
            else f"key={key}: absent in the log, the API said {said}"
        )
    if (
        got.status == 200
        and parse_version(got.etag) == expected.version
        and got.value_op == expected.op
    ):
        return None
    want = f"{expected.partition}-{expected.offset}"
    return (
        f"key={key}: the log ends at {want} ({expected.op}), the API said {said} "
        f"({got.value_op})"
    )


class _Floors:
    """The highest version among (completed at, version, op) items completed before a
    given time."""

    def __init__(self, items):
        items = sorted(items, key=lambda item: item[0])
        self.ends = [item[0] for item in items]
        self.best, best = [], None
        for _, version, op in items:
            if best is None or version > best[0]:
                best = (version, op)
            self.best.append(best)

    def before(self, moment):
        """(version, op) of the highest version completed before `moment`, or None."""
        index = bisect.bisect_left(self.ends, moment)
        return self.best[index - 1] if index else None
