"""The verdict: violations with examples, answers by status and code, throughput, and
per fault how unavailable the store was and how fast it recovered after the heal.
"""

import collections
import dataclasses

from kvstore.checker.analysis import KINDS


@dataclasses.dataclass
class FaultFigures:
    """What clients saw of one fault. `recovery_s`: from the heal until the last failed
    answer to an operation started after it (and before the next fault; 0: none failed
    after the heal)."""

    name: str
    detail: str
    at_s: float  # injected, seconds after the run's first operation
    duration_s: float
    ops: int  # operations started while the fault lasted
    unavailable: int  # of them answered 503
    unknown: int  # of them answered 504/5xx, or not at all
    recovery_s: float
    write_recovery_s: float
    longest_gap_s: float  # the longest time one key got no decided answer
    seconds_with_503: int  # whole seconds from the fault on in which a client got one


@dataclasses.dataclass
class Verdict:
    findings: object  # analysis.Findings
    ops: int
    seconds: float
    answers: collections.Counter  # (kind, status or error, code) -> count
    faults: list

    @property
    def ok(self):
        return self.findings.violations == 0

    @property
    def ops_per_s(self):
        return self.ops / self.seconds if self.seconds else 0.0

    def as_dict(self):
        return {
            "ok": self.ok,
            "ops": self.ops,
            "seconds": round(self.seconds, 1),
            "violations": dict(self.findings.counts),
            "examples": self.findings.examples,
            "notes": dict(self.findings.notes),
            "answers": {" ".join(map(str, k)): n for k, n in self.answers.items()},
            "faults": [dataclasses.asdict(f) for f in self.faults],
        }


def verdict(history, findings):
    ops = history.ops
    t0 = min((op.start for op in ops), default=0.0)
    t1 = max((op.end for op in ops), default=t0)
    answers = collections.Counter(
        (op.kind, op.status if op.status is not None else op.error, op.code or "")
        for op in ops
    )
    healed = sorted((f for f in history.faults if f.end), key=lambda f: f.start)
    faults = [
        _fault_figures(ops, fault, t0, later.start if later else None)
        for fault, later in zip(healed, healed[1:] + [None])
    ]
    return Verdict(findings, len(ops), t1 - t0, answers, faults)


def _fault_figures(ops, fault, t0, next_fault):
    """Figures of one fault; what happens from the next fault on is that one's."""
    until = next_fault if next_fault is not None else float("inf")
    during = [op for op in ops if fault.start <= op.start <= fault.end]
    failed = [op for op in ops if fault.start <= op.start < until and not op.available]
    after = [op for op in failed if op.start >= fault.end]
    recovery = max((op.end - fault.end for op in after), default=0.0)
    refused = sum(op.status == 503 for op in during)
    return FaultFigures(
        name=fault.name,
        detail=fault.detail,
        at_s=round(fault.start - t0, 2),
        duration_s=round(fault.end - fault.start, 2),
        ops=len(during),
        unavailable=refused,
        unknown=sum(op.status is None or op.status >= 500 for op in during) - refused,
        recovery_s=round(recovery, 2),
        write_recovery_s=round(
            max((op.end - fault.end for op in after if op.kind == "write"), default=0),
            2,
        ),
        longest_gap_s=round(
            _longest_gap(ops, fault.start, fault.end + max(recovery, 0.0)), 2
        ),
        seconds_with_503=len(
            {int(op.end - fault.start) for op in failed if op.status == 503}
        ),
    )


def _longest_gap(ops, start, end):
    """The longest time between two decided answers for one key, among the gaps that
    overlap [start, end]."""
    by_key = collections.defaultdict(list)
    for op in ops:
        if op.available:
            by_key[op.key].append(op.end)
    longest = 0.0
    for ends in by_key.values():
        ends.sort()
        for before, after in zip(ends, ends[1:]):
            if after >= start and before <= end:
                longest = max(longest, after - before)
    return longest


def render(result):
    """The verdict as text for a terminal."""
    findings = result.findings
    verdict_line = (
        "PASS: no violations"
        if result.ok
        else f"FAIL: {findings.violations} violation(s)"
    )
    lines = [
        f"{result.ops} operations in {result.seconds:.1f}s "
        f"({result.ops_per_s:.0f} ops/s)",
        "answers:",
    ]
    for (kind, status, code), count in sorted(
        result.answers.items(), key=lambda item: (item[0][0], str(item[0][1:]))
    ):
        lines.append(f"  {kind:5} {status!s:8} {code:24} {count}")
    lines.append("violations:")
    for kind, meaning in KINDS.items():
        lines.append(f"  {kind:17} {findings.counts.get(kind, 0):6}  ({meaning})")
        for example in findings.examples.get(kind, []):
            lines.append(f"      e.g. {example}")
    if findings.notes:
        lines.append("notes:")
        lines += [f"  {note}: {n}" for note, n in sorted(findings.notes.items())]
    if result.faults:
        lines.append(
            "faults (at, lasted, ops during, 503, unknown, recovery after heal "
            "all/writes, longest key gap, seconds with a 503):"
        )
        for f in result.faults:
            lines.append(
                f"  {f.name:18} {f.at_s:6.1f}s {f.duration_s:5.1f}s {f.ops:6} "
                f"{f.unavailable:5} {f.unknown:5} {f.recovery_s:5.1f}s/"
                f"{f.write_recovery_s:.1f}s {f.longest_gap_s:5.1f}s "
                f"{f.seconds_with_503:3}s  {f.detail}"
            )
    lines.append(verdict_line)
    return "\n".join(lines)
