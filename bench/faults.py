"""The consistency checker's full fault matrix: writes docs/FAULTS.md.

    bench/faults [--runs 3] [--only pause,partition] [--short] [--output FILE]

Starts a 3-node Kafka cluster of its own (bin/kafka-local, replication factor 3,
min.insync.replicas 2) and, per run, a fresh store of three instances; drives the
checker's workload through them while injecting one fault (tests/faults/scenarios.py),
then checks every key's history against the topic. Histories are kept as JSON lines
(--histories, default a temporary directory) so a failing run can be read again with
`manage.py kvstore_check --analyze FILE`. Exits 1 when any run found a violation.
"""

import argparse
import collections
import datetime
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
import django  # noqa: E402

django.setup()

from kvstore.checker import analysis, history, report  # noqa: E402
from kvstore.checker.analysis import KINDS  # noqa: E402
from tests.faults import cluster, scenarios  # noqa: E402
from tests.faults.brokers import BrokerCluster  # noqa: E402

DEFAULT_ORDER = [
    "pause",
    "pause-long",
    "consumer-pause",
    "partition",
    "broker-kill",
    "broker-stall",
    "rolling-restart",
    "consumer-kill",
    "worker-kill",
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", help="comma-separated faults (default: all)")
    parser.add_argument("--short", action="store_true", help="the CI timings")
    parser.add_argument("--clients", type=int, default=9)
    parser.add_argument("--output", default=str(ROOT / "docs" / "FAULTS.md"))
    parser.add_argument("--histories", help="directory for the histories")
    parser.add_argument(
        "--from",
        dest="saved",
        metavar="DIR",
        help="only write the report again from the histories and results.json in DIR",
    )
    args = parser.parse_args()
    if args.saved:
        saved = Path(args.saved)
        commit = saved / "commit.txt"
        args.commit = commit.read_text().strip() if commit.exists() else "unknown"
        Path(args.output).write_text(markdown(saved_outcomes(saved), args))
        return 0
    args.commit = _git("rev-parse", "--short", "HEAD")
    names = args.only.split(",") if args.only else DEFAULT_ORDER
    unknown = set(names) - set(scenarios.SCENARIOS)
    if unknown:
        parser.error(f"unknown fault(s): {', '.join(sorted(unknown))}")
    histories = Path(args.histories or tempfile.mkdtemp(prefix="kvstore-faults-"))
    histories.mkdir(parents=True, exist_ok=True)
    outcomes, errors = collections.defaultdict(list), []
    brokers = BrokerCluster(nodes=3).start()
    try:
        with tempfile.TemporaryDirectory(prefix="kvstore-faults-") as work:
            for name in names:
                run_fault(name, brokers, Path(work), histories, args, outcomes, errors)
    finally:
        brokers.stop()
    Path(args.output).write_text(markdown(outcomes, args, errors))
    (histories / "commit.txt").write_text(args.commit + "\n")
    dump = histories / "results.json"
    dump.write_text(
        json.dumps(
            {
                name: [
                    {"verdict": o.verdict.as_dict(), "figures": o.figures} for o in runs
                ]
                for name, runs in outcomes.items()
            },
            indent=1,
        )
    )
    print(f"wrote {args.output}; histories and results.json in {histories}")
    bad = sum(o.verdict.findings.violations for runs in outcomes.values() for o in runs)
    return 1 if bad or errors else 0


def run_fault(name, brokers, work, histories, args, outcomes, errors):
    """Every run of one fault on a fresh store; its runs share it (each has keys of its
    own) unless a run left it unable to serve or the harness failed."""
    store = None
    try:
        for number in range(1, args.runs + 1):
            try:
                if store is None:
                    where = work / f"{name}-{number}"
                    store = new_store(brokers, where)
                outcome = one_run(name, number, store, histories, args)
            except Exception as exc:  # the harness failed: say so, keep its logs, go on
                traceback.print_exc()
                _keep_logs(where, histories / f"{name}-{number}-logs")
                errors.append(
                    f"{name} run {number}: {type(exc).__name__}: "
                    + (str(exc).splitlines() or [""])[0]
                )
                outcome = None
            if outcome is not None:
                outcomes[name].append(outcome)
            if store is not None and (
                outcome is None or not outcome.figures["stable_after"]
            ):
                store.stop()
                store = None
    finally:
        if store is not None:
            store.stop()


def _keep_logs(directory, into):
    for log in directory.glob("*/*.log"):
        target = into / log.parent.name / log.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(log, target)


def saved_outcomes(directory):
    """The outcomes of an earlier run, each history analysed again."""
    results = json.loads((directory / "results.json").read_text())
    outcomes = {}
    for name, runs in results.items():
        outcomes[name] = []
        for number, saved in enumerate(runs, 1):
            path = directory / f"{name}-{number}.jsonl"
            loaded = history.load(path)
            result = report.verdict(loaded, analysis.analyze(loaded))
            outcomes[name].append(
                scenarios.Outcome(name, result, saved["figures"], str(path))
            )
    return outcomes


def new_store(brokers, directory):
    return cluster.StoreCluster(brokers, directory, isolate=True).start()


def one_run(name, number, store, histories, args):
    outcome = scenarios.run(
        name,
        store,
        full=not args.short,
        history_path=str(histories / f"{name}-{number}.jsonl"),
        clients=args.clients,
    )
    print(f"== {name} run {number}", file=sys.stderr)
    print(report.render(outcome.verdict), file=sys.stderr)
    print(f"figures: {outcome.figures}", file=sys.stderr)
    return outcome


def markdown(outcomes, args, errors=()):
    return (
        "\n".join(
            _header(args)
            + _faults(outcomes, args)
            + _per_fault(outcomes)
            + _examples_found(outcomes)
            + _harness_errors(errors)
            + _every_run(outcomes)
        )
        + "\n"
    )


def _harness_errors(errors):
    """Runs the harness could not make (a store that never became stable, …): they
    are no verdict, and the page says so."""
    if not errors:
        return []
    return ["", "## Runs the harness could not make", ""] + [
        f"- {error}" for error in errors
    ]


def _header(args):
    command = "bench/faults" + (f" --runs {args.runs}" if args.runs != 3 else "")
    command += f" --only {args.only}" if args.only else ""
    command += " --short" if args.short else ""
    return [
        "# Faults: what the consistency checker finds",
        "",
        f"Written by `{command}` on {datetime.date.today()} from commit "
        f"`{args.commit}`, {os.cpu_count()} cores "
        f"shared with other work ({platform.machine()}). CI runs a short version of "
        "each fault: `bin/test -q tests/test_faults.py` (`FAULT_TESTS=none` skips "
        "them). Any deployment can be checked without "
        "faults: `python manage.py kvstore_check --url http://a --url http://b "
        "--seconds 30`.",
        "",
        "Setup: a 3-node Kafka cluster (KRaft, `bin/kafka-local`), topics with "
        "replication factor 3 and `min.insync.replicas=2`, never compacted during a "
        f"run; three instances (gunicorn 2 workers × 4 threads, and a consumer), "
        f"{cluster.PARTITIONS} partitions, session timeout "
        f"{cluster.SESSION_TIMEOUT_MS / 1000:g} s, produce timeout 2 s; "
        f"{args.clients} clients spread over the instances (instance 0 runs in a "
        "network namespace, bridged to the host's loopback by a proxy that a partition "
        "cuts; its clients reach it through a port that is never cut) doing reads, "
        "compare-and-set increments and blind writes on two keys per partition (one "
        "more key every 3 s), a client timeout of "
        f"{scenarios.CLIENT_TIMEOUT:g} s. Every answer is checked against the "
        "topic's replay: "
        + "; ".join(f"**{kind}**: {meaning}" for kind, meaning in KINDS.items())
        + ".",
    ]


def _faults(outcomes, args):
    lines = ["", "## The faults", "", "| fault | what | warm-up, fault, after (s) |"]
    lines.append("| --- | --- | --- |")
    for name in outcomes:
        scenario = scenarios.SCENARIOS[name]
        t = scenario.short if args.short else scenario.full
        lines.append(
            f"| {name} | {_what(name)} | {t.warmup:g}, {t.hold:g}, {t.tail:g} |"
        )
    return lines


def _per_fault(outcomes):
    return [
        "",
        "## Per fault",
        "",
        "Unavailability: the share of operations started during the fault that got a "
        "503 (and those with no decided answer: 504, reset, timeout); seconds with a "
        "503: whole seconds from the fault's start (to the next fault) in which some "
        "client got a 503 (max over runs); recovery: from "
        "the heal until the last failed answer to an operation started after it (max "
        "over runs; writes alone in the next column); longest gap: the longest time "
        "one key got no decided answer around the fault; crashed: store processes that "
        "exited by themselves (restarted, as a supervisor would); not serving after: "
        "runs after which the store was not ready again within 90 s.",
        "",
        "Why the broker faults stop nearly everything for a while: an instance answers "
        "only under its membership lease, renewed by the group coordinator's answers to "
        "its heartbeats. When the broker that is the group coordinator (or leads "
        "partitions) is killed or stalled, no instance can prove it still owns its "
        "partitions until the coordinator has moved (Kafka's broker session timeout, "
        "9 s by default, 4 s in `bin/kafka-local`'s clusters, then a new leader), so "
        "all answer 503 meanwhile: "
        "unavailable, never wrong. In the rolling restart, the unknown answers are "
        "clients of the instance being restarted finding its port closed; a client "
        "sent there by a peer's 307 would be a violation (redirect_refused).",
        "",
        "| fault | runs | operations | ops/s | violations | by kind | 503 during | "
        "seconds with a 503 | unknown during | recovery | write recovery | "
        "longest gap | crashed | not serving after |",
        "|" + " --- |" * 14,
    ] + [_row(name, runs) for name, runs in outcomes.items()]


def _examples_found(outcomes):
    lines = ["", "## Examples of the violations found", ""]
    for name, runs in outcomes.items():
        examples = _examples(runs)
        if examples:
            lines += [f"**{name}** ({_what(name)}):", *examples, ""]
    crashes = [
        f"- {name}: {crash}"
        for name, runs in outcomes.items()
        for outcome in runs
        for crash in outcome.figures["crashed"]
    ]
    if crashes:
        lines += ["Store processes that crashed (and were restarted):", *crashes, ""]
    if all(o.verdict.ok for runs in outcomes.values() for o in runs):
        lines.append("None: every run passed.")
    return lines


def _every_run(outcomes):
    lines = ["", "## Every run", ""]
    lines += ["| fault | run | ops | violations | fault figures | other figures |"]
    lines += ["| --- | --- | --- | --- | --- | --- |"]
    for name, runs in outcomes.items():
        for number, outcome in enumerate(runs, 1):
            v = outcome.verdict
            faults = "; ".join(
                f"{f.detail}: {f.unavailable}/{f.ops} 503, "
                f"recovery {f.recovery_s:.1f} s"
                for f in v.faults
            )
            kinds = ", ".join(f"{k} {n}" for k, n in sorted(v.findings.counts.items()))
            lines.append(
                f"| {name} | {number} | {v.ops} | {kinds or 0} | {faults} | "
                f"{_figures(outcome.figures)} |"
            )
    return lines


def _row(name, runs):
    ops = sum(o.verdict.ops for o in runs)
    seconds = sum(o.verdict.seconds for o in runs)
    counts = collections.Counter()
    for o in runs:
        counts.update(o.verdict.findings.counts)
    faults = [f for o in runs for f in o.verdict.faults]
    during = sum(f.ops for f in faults) or 1
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(counts.items())) or "–"
    return (
        f"| {name} | {len(runs)} | {ops} | {ops / seconds if seconds else 0:.0f} | "
        f"{sum(counts.values())} | {kinds} | "
        f"{100 * sum(f.unavailable for f in faults) / during:.0f}% | "
        f"{max((f.seconds_with_503 for f in faults), default=0)} | "
        f"{100 * sum(f.unknown for f in faults) / during:.0f}% | "
        f"{max((f.recovery_s for f in faults), default=0):.1f} s | "
        f"{max((f.write_recovery_s for f in faults), default=0):.1f} s | "
        f"{max((f.longest_gap_s for f in faults), default=0):.1f} s | "
        f"{sum(len(o.figures['crashed']) for o in runs)} | "
        f"{sum(not o.figures['stable_after'] for o in runs)} |"
    )


def _what(name):
    """The first sentence of the scenario's docstring."""
    doc = " ".join(scenarios.SCENARIOS[name].inject.__doc__.split())
    return doc.split(". ")[0].rstrip(".")


def _figures(figures):
    shown = {k: v for k, v in figures.items() if k != "phases" and v not in ([], True)}
    return ", ".join(f"{k}: {v}" for k, v in shown.items())


def _examples(runs, per_kind=2):
    shown = collections.defaultdict(list)
    for outcome in runs:
        for kind, examples in outcome.verdict.findings.examples.items():
            shown[kind].extend(examples)
    return [
        f"- {kind}: `{example}`"
        for kind, examples in sorted(shown.items())
        for example in examples[:per_kind]
    ]


def _git(*args):
    return subprocess.run(
        ["git", *args], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()


def _interrupted(signum, frame):
    raise KeyboardInterrupt  # SIGTERM too stops the brokers and instances started


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _interrupted)
    sys.exit(main())
