"""Namespace topics: create them compacted and co-partitioned, or verify the ones that
exist.

`plan()` is pure (the cluster's answer in, the work and the problems out); `ensure()`
applies it.
"""

import dataclasses
import time

from kvstore.errors import StoreUnavailable, TopicMisconfigured

COMPACT = "compact"
# Records younger than this are never compacted away. Conditions are decided by the
# log (kvstore.conditions), and a record the log rejected must be followed by its
# owner's re-assert before compaction could make it a key's last word: an hour leaves
# any owner, or the next one after a failover, ample time.
MIN_COMPACTION_LAG_MS = 3_600_000


@dataclasses.dataclass(frozen=True)
class Plan:
    """What `ensure()` will do: topics to create, and the partition count they all
    share."""

    create: tuple[str, ...]
    partitions: int
    notes: tuple[str, ...] = ()


def creation_configs(settings):
    """Topic configs for a new namespace topic: compacted, with a compaction lag, plus
    the operator's extra configs."""
    configs = {"min.compaction.lag.ms": str(MIN_COMPACTION_LAG_MS)}
    configs.update(settings.topic_configs)
    configs["cleanup.policy"] = COMPACT
    return configs


def plan(settings, existing):
    """Decide what to do with the namespace topics, given `{topic: TopicState or None}`.

    Raises TopicMisconfigured listing every problem: a topic that is not compacted (only
    `cleanup.policy=compact` keeps every key forever), or partition counts that differ
    from one another or from KVSTORE_PARTITIONS (a key's partition depends on the count,
    so it is fixed).
    """
    present = {name: state for name, state in existing.items() if state is not None}
    problems = []
    for name, state in sorted(present.items()):
        policy = state.configs.get("cleanup.policy", "")
        if policy != COMPACT:
            problems.append(
                f"topic {name} has cleanup.policy={policy!r}; the store needs "
                "'compact' "
                f"(a delete policy would drop keys when their retention ends)"
            )
    counts = {state.partitions for state in present.values()}
    if len(counts) > 1:
        sizes = ", ".join(
            f"{name}={state.partitions}" for name, state in sorted(present.items())
        )
        problems.append(
            "namespace topics must be co-partitioned but have different partition "
            f"counts: {sizes}"
        )
    elif counts and counts != {settings.partitions}:
        (count,) = counts
        problems.append(
            f"the namespace topics have {count} partitions but "
            f"KVSTORE_PARTITIONS={settings.partitions}; "
            "the partition count is fixed when the topics are created: set "
            f"KVSTORE_PARTITIONS={count}"
        )
    if problems:
        raise TopicMisconfigured("; ".join(problems))
    notes = tuple(
        f"topic {name} has replication factor {state.replication_factor}, "
        f"KVSTORE_REPLICATION_FACTOR is {settings.replication_factor}"
        for name, state in sorted(present.items())
        if state.replication_factor != settings.replication_factor
    )
    missing = tuple(name for name, state in existing.items() if state is None)
    return Plan(create=missing, partitions=settings.partitions, notes=notes)


def ensure(admin, settings, report=lambda message: None):
    """Create the missing namespace topics and verify all of them; idempotent.

    Returns the verified `{topic: TopicState}`. Raises TopicMisconfigured (and creates
    nothing) when an existing topic cannot serve as the store's database.
    """
    names = list(settings.topics().values())
    work = plan(settings, admin.describe(names))
    for note in work.notes:
        report(f"note: {note}")
    for name in work.create:
        admin.create(
            name,
            work.partitions,
            settings.replication_factor,
            creation_configs(settings),
        )
        report(
            f"created {name} ({work.partitions} partitions, replication factor "
            f"{settings.replication_factor}, compacted)"
        )
    verified = _visible(admin, names, work.create)
    plan(settings, verified)  # a concurrent creator could have made them differently
    for name in names:
        if name not in work.create:
            report(
                f"verified {name} ({verified[name].partitions} partitions, compacted)"
            )
    return verified


def _visible(admin, names, created, settle_s=10.0):
    """`admin.describe(names)`, asked again while a topic just created is not yet
    known to the broker that answers (metadata reaches brokers a moment later)."""
    deadline = time.monotonic() + settle_s
    while True:
        described = admin.describe(names)
        if all(described[name] is not None for name in created):
            return described
        if time.monotonic() >= deadline:
            missing = [name for name in created if described[name] is None]
            raise StoreUnavailable(
                f"created {', '.join(missing)} but Kafka does not describe "
                f"it after {settle_s:.0f} s"
            )
        time.sleep(0.1)
