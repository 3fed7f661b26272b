"""One checker run against a deployment: start the workload, let a caller inject faults
(marking them in the history), stop, read every key back through the API and the raw
topic from Kafka, and judge.
"""

import contextlib
import random
import time
import uuid

import requests

from kvstore import log
from kvstore.checker import analysis, report, workload
from kvstore.checker.history import History, Record
from kvstore.checker.replay import replay


class CheckRun:
    """A run of the workload on `urls` (the instances; `client_urls`, if given, are
    where the clients send their requests instead, one per client in turn) of the store
    configured by `settings` (bootstrap servers and topic prefix: the topic is read
    directly)."""

    def __init__(
        self,
        settings,
        urls,
        client_urls=None,
        namespace="kv",
        history_path=None,
        keys_per_partition=3,
        fresh_every=4.0,
        **workload_options,
    ):
        self.settings, self.urls, self.namespace = settings, list(urls), namespace
        self.topic = settings.topic(namespace)
        self.run_id = f"chk{uuid.uuid4().hex[:8]}"
        partitions = self._partitions()
        self.plan = workload.KeyPlan(
            self.run_id, partitions, keys_per_partition, fresh_every=fresh_every
        )
        meta = {
            "run": self.run_id,
            "topic": self.topic,
            "partitions": partitions,
            "urls": self.urls,
            "keys": self.plan.keys,
            "seed": workload_options.setdefault("seed", random.randrange(1 << 30)),
        }
        self.history = History(history_path, meta)
        self.workload = workload.Workload(
            self.history,
            client_urls or self.urls,
            self.plan,
            self.run_id,
            namespace,
            **workload_options,
        )
        self.start_offsets = None

    def _partitions(self):
        """The namespace's real partition count, as the first instance that answers
        describes it."""
        for url in self.urls:
            try:
                described = requests.get(f"{url}/api/cluster", timeout=10).json()
                return described["namespaces"][self.namespace]["partitions"]
            except (requests.RequestException, ValueError, KeyError, TypeError):
                continue
        raise RuntimeError(f"no instance described namespace {self.namespace!r}")

    def start(self):
        # The run's keys are new: the topic needs reading only from here on.
        with log.admin(self.settings) as admin:
            state = admin.describe([self.topic])[self.topic]
            self.start_offsets = admin.offsets(self.topic, range(state.partitions))
            self.topic_configs = state.configs
        self.workload.start()
        return self

    @contextlib.contextmanager
    def fault(self, name, detail=""):
        """Mark a fault from entering the block (injected) to leaving it (healed)."""
        fault = self.history.fault(name, time.monotonic(), detail)
        try:
            yield fault
        finally:
            self.history.healed(fault, time.monotonic())

    def stop(self):
        self.workload.stop()

    def verify(self, final_deadline_s=60.0, settle_s=10.0):
        """Read every key the run touched back through the API, then the topic, and
        analyse; a report.Verdict."""
        touched = sorted({op.key for op in self.history.ops})
        finals, records = self._final_state(touched, final_deadline_s, settle_s)
        self.history.add_finals(finals)
        self.history.add_records(records)
        findings = analysis.analyze(self.history, self.compaction_possible())
        self.history.close()
        return report.verdict(self.history, findings)

    def _final_state(self, keys, final_deadline_s, settle_s):
        """(final reads, the run's records) once they agree, or after `settle_s`: the
        log may still grow after the run (a record delivered late, a re-assert), so a
        final read is compared with the topic as read after it."""
        wanted, deadline = set(self.plan.keys), time.monotonic() + settle_s
        while True:
            finals = workload.final_reads(
                self.urls, keys, self.namespace, final_deadline_s
            )
            records = [r for r in map(_record, self._read_topic()) if r.key in wanted]
            final = replay(records, wanted).final
            if time.monotonic() > deadline or not any(
                analysis.final_mismatch(f.key, f, final.get(f.key)) for f in finals
            ):
                return finals, records
            time.sleep(1.0)

    def _read_topic(self):
        return log.read_all_records(self.settings, self.topic, self.start_offsets)

    def compaction_possible(self):
        """Whether compaction may have removed a superseded record of this run (then a
        missing version cannot be judged)."""
        configs = self.topic_configs or {}
        if "compact" not in configs.get("cleanup.policy", "compact"):
            return False
        lag_ms = int(configs.get("min.compaction.lag.ms", "0") or 0)
        ran_s = time.monotonic() - (self.workload.began or time.monotonic())
        return lag_ms < (ran_s + 60) * 1000


def _record(raw):
    """A log.LogRecord as the checker's Record (text, not bytes)."""
    return Record(
        raw.partition,
        raw.offset,
        raw.key.decode("utf-8", "replace") if raw.key is not None else "",
        raw.value.decode("utf-8", "replace") if raw.value is not None else None,
        {
            name: (value or b"").decode("utf-8", "replace")
            for name, value in raw.headers.items()
        },
    )
