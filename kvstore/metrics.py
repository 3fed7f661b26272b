"""Metrics for Prometheus: the one module that imports `prometheus_client`.

The web workers count requests and time writes here. gunicorn runs several worker
processes, so the client runs in its multiprocess mode: each worker writes its figures
to files in PROMETHEUS_MULTIPROC_DIR, which `kvstore.api.server` sets per instance
(beside the cache), empties when gunicorn starts and cleans when a worker dies; a
scrape adds them all up. The consumer process's figures are read at scrape time from
the cache it keeps (`cluster.describe`): they are never older than its last batch, and
a consumer that died leaves no stale series behind.
"""

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from kvstore import cache, timing

MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
METHODS = frozenset({"GET", "HEAD", "PUT", "PATCH", "POST", "DELETE", "OPTIONS"})
WRITE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5)
WRITE_BUCKETS += (1.0, 2.5, 5.0, 10.0)

REQUESTS = Counter(
    "kvstore_requests",
    "HTTP requests answered, by namespace ('' outside the namespaces), method and "
    "status.",
    ["namespace", "method", "status"],
)
CODED = Counter(
    "kvstore_answer_codes",
    "Answers whose JSON body names a code (307 not_owner, 503 partition_restoring, "
    "...), by status and code.",
    ["status", "code"],
)
IN_PROGRESS = Gauge(
    "kvstore_requests_in_progress",
    "Requests being answered now, over every web worker.",
    multiprocess_mode="livesum",
)
_WRITE_PHASES = {
    timing.PRODUCE: Histogram(
        "kvstore_write_produce_seconds",
        "Writes: from handing the record to the producer to Kafka's acknowledgement.",
        ["namespace"],
        buckets=WRITE_BUCKETS,
    ),
    timing.APPLY_WAIT: Histogram(
        "kvstore_write_apply_wait_seconds",
        "Writes: from Kafka's acknowledgement until this instance's cache applied it.",
        ["namespace"],
        buckets=WRITE_BUCKETS,
    ),
    timing.TOTAL: Histogram(
        "kvstore_write_seconds",
        "Writes handed to the producer (acknowledged or not): the whole request, as "
        "the web worker saw it.",
        ["namespace"],
        buckets=WRITE_BUCKETS,
    ),
}


def record(namespace, method, status, code, phases, total):
    """Count one answered request; time it as a write when it produced a record."""
    method = method if method in METHODS else "other"
    REQUESTS.labels(namespace, method, str(status)).inc()
    if code:
        CODED.labels(str(status), code).inc()
    if timing.PRODUCE in phases:
        for name, histogram in _WRITE_PHASES.items():
            seconds = total if name == timing.TOTAL else phases.get(name, 0.0)
            histogram.labels(namespace).observe(seconds)


def exposition(describe):
    """(body, content type) of a scrape: every web worker's figures, and the cache's
    as `describe()` (a `cluster.describe` dict) reports them now."""
    registry = CollectorRegistry(auto_describe=False)
    path = os.environ.get(MULTIPROC_DIR)
    if path:
        multiprocess.MultiProcessCollector(registry, path)
    else:  # one process (runserver, tests): its own registry is the whole story
        registry.register(_ThisProcess())
    registry.register(_CacheCollector(describe))
    return generate_latest(registry), CONTENT_TYPE_LATEST


def worker_exited(pid):
    """A web worker died: drop its live gauges (its counters still count)."""
    if os.environ.get(MULTIPROC_DIR):
        multiprocess.mark_process_dead(pid)


class _ThisProcess:
    def collect(self):
        return REGISTRY.collect()


class _CacheCollector:
    # Not `describe`: a registry calls a collector's `describe()` for its names.
    def __init__(self, describe):
        self._describe = describe

    def collect(self):
        return families(self._describe())


def families(described):
    """Metric families of the consumer's figures in a `cluster.describe` dict."""
    consumer = described["consumer"]
    yield _gauge(
        "kvstore_consumer_up", "1 while the consumer process runs.", consumer["alive"]
    )
    yield _gauge(
        "kvstore_consumer_lease",
        "1 while the consumer holds its membership lease (it may answer for its "
        "partitions).",
        int(bool(consumer["lease"])),
    )
    yield _counter(
        "kvstore_consumer_rebalances",
        "Rebalances the consumer took part in (new assignments), since it started.",
        consumer.get("rebalances") or 0,
    )
    if described["generation"] is not None:
        yield _gauge(
            "kvstore_group_generation",
            "The group generation of the last assignment.",
            described["generation"],
        )
    yield _gauge(
        "kvstore_group_members",
        "Members in the last assignment.",
        len(described["members"]),
    )
    yield from _partition_families(described["local"])


# (field of a `cluster.describe` local row, metric name, help)
_PER_PARTITION = (
    (
        "applied_offset",
        "kvstore_partition_applied_offset",
        "The next offset the cache will apply (everything below it is applied).",
    ),
    ("end_offset", "kvstore_partition_end_offset", "The partition's end offset."),
    ("lag", "kvstore_partition_lag", "Records in Kafka not yet applied here."),
    (
        "restore_remaining",
        "kvstore_partition_restore_remaining",
        "Records left to restore before the partition is served (0 once ready).",
    ),
)
_PASSED_OVER = (
    (
        "skipped",
        "kvstore_partition_records_skipped",
        "Records passed over because their key or value cannot be used.",
    ),
    (
        "misplaced",
        "kvstore_partition_records_misplaced",
        "Records passed over because their key belongs to another partition.",
    ),
)
_LABELS = ["namespace", "partition"]


def _partition_families(rows):
    """Per (namespace, partition) this instance holds."""
    for field, name, help_text in _PER_PARTITION:
        family = GaugeMetricFamily(name, help_text, labels=_LABELS)
        for row in rows:
            if row[field] is not None:
                family.add_metric(_labels(row), row[field])
        yield family
    for field, name, help_text in _PASSED_OVER:
        family = CounterMetricFamily(name, help_text, labels=_LABELS)
        for row in rows:
            family.add_metric(_labels(row), row[field])
        yield family
    states = GaugeMetricFamily(
        "kvstore_partition_state",
        "1 for the state the partition is in here (restoring, ready).",
        labels=_LABELS + ["state"],
    )
    for row in rows:
        for state in (cache.RESTORING, cache.READY):
            states.add_metric(_labels(row) + [state], int(row["state"] == state))
    yield states


def _labels(row):
    return [row["namespace"], str(row["partition"])]


def _gauge(name, help_text, value):
    return GaugeMetricFamily(name, help_text, value=value)


def _counter(name, help_text, value):
    return CounterMetricFamily(name, help_text, value=value)
