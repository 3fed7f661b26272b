"""The whole cluster at once, for `kvstore_status` and the cluster page: who is in the
group and who holds which partition, as Kafka's group coordinator says (or, without
Kafka, as an instance's last assignment says), joined with each member's own
`/api/cluster` (applied offset, state, restore, consumer), so every partition shows its
owner and whether that owner can serve it now."""

import concurrent.futures
import dataclasses

import requests

from kvstore import cache, routing
from kvstore.errors import StoreUnavailable

REPORT_TIMEOUT = 3.0
# A partition's state across the cluster; only READY means it is served.
READY, RESTORING, MOVING = cache.READY, cache.RESTORING, "moving"
UNOWNED, UNREACHABLE, NOT_SERVING = "unowned", "unreachable", "not_serving"
_pool = concurrent.futures.ThreadPoolExecutor(
    max_workers=8, thread_name_prefix="overview"
)


@dataclasses.dataclass(frozen=True)
class Membership:
    """Who holds what: `owners` {partition: URL or None} covers every partition;
    `ends` and `committed` are {(namespace, partition): offset}."""

    source: str  # "kafka" (the group coordinator) or "instance" (its last assignment)
    group_state: str | None
    members: tuple
    owners: dict
    ends: dict = dataclasses.field(default_factory=dict)
    committed: dict = dataclasses.field(default_factory=dict)


def from_kafka(settings, admin):
    """The Membership as Kafka describes the group now (StoreUnavailable when it does
    not answer)."""
    topics = settings.topics()
    partitions = _partition_count(admin, topics)
    group = admin.describe_group(settings.group_id)
    members = [m for m in group.members if m.url is not None]  # kvstore's own only
    owners = dict.fromkeys(range(partitions))
    for member in members:
        for held in member.assigned.values():
            owners.update({p: member.url for p in held if p < partitions})
    ends = {
        (ns, p): end
        for ns, topic in topics.items()
        for p, end in admin.offsets(topic, range(partitions)).items()
    }
    namespace_of = {topic: ns for ns, topic in topics.items()}
    committed = {
        (namespace_of[topic], p): offset
        for (topic, p), offset in group.committed.items()
        if topic in namespace_of
    }
    urls = tuple(sorted({m.url for m in members}))
    return Membership("kafka", group.state, urls, owners, ends, committed)


def _partition_count(admin, topics):
    """The namespace topics' partition count (co-partitioned: the smallest)."""
    states = admin.describe(list(topics.values()))
    missing = [name for name, state in states.items() if state is None]
    if missing:
        raise StoreUnavailable(
            f"missing namespace topics {', '.join(missing)}: run `manage.py "
            "kvstore_init`"
        )
    return min(state.partitions for state in states.values())


def from_instance(described):
    """The Membership as an instance's `cluster.describe` reports its last
    assignment."""
    owners = {int(p): owner for p, owner in described["owners"].items()}
    return Membership("instance", None, tuple(described["members"]), owners)


def reports(settings, urls, headers, local=None):
    """{URL: its `/api/cluster` answer, or why there is none (a string)}, asked in
    parallel. `local`: this instance's own description, used as it is. Only peers on
    the allow-list are asked: their URLs come from the group, and the request carries
    a key."""
    found, asked = {}, {}
    for url in urls:
        if local is not None and url == local["instance"]:
            found[url] = local
        elif not routing.peer_allowed(settings, url):
            found[url] = "not asked: not on KVSTORE_PEER_ALLOWLIST"
        else:
            asked[url] = _pool.submit(_report, url, headers)
    found.update({url: future.result() for url, future in asked.items()})
    return found


def _report(url, headers):
    try:
        answer = requests.get(
            f"{url}/api/cluster",
            headers=headers,
            timeout=REPORT_TIMEOUT,
            allow_redirects=False,
        )
    except requests.RequestException as exc:
        return f"unreachable: {exc.__class__.__name__}"
    if answer.status_code != 200:
        return f"answered {answer.status_code}"
    try:
        return answer.json()
    except ValueError:
        return "answered something that is not JSON"


def collect(settings, headers, admin=None, local=None):
    """The cluster-wide status (see `assemble`), from Kafka through `admin` and, when
    Kafka does not answer (or without an admin), from `local`, this instance's own
    `cluster.describe`; StoreUnavailable when neither is at hand."""
    membership, kafka_error = None, None
    if admin is not None:
        try:
            membership = from_kafka(settings, admin)
        except StoreUnavailable as exc:
            kafka_error = str(exc)
    if membership is None:
        if local is None:
            raise StoreUnavailable(kafka_error or "no Kafka and no instance to ask")
        membership = from_instance(local)
    urls = list(membership.members)
    if local is not None and local["instance"] not in urls:
        urls.append(local["instance"])  # in no group (its consumer is down): say so
    found = reports(settings, urls, headers, local)
    status = assemble(membership, found, settings.namespaces)
    return {"group": settings.group_id, "kafka_error": kafka_error, **status}


def assemble(membership, found, namespaces):
    """The status: every member and what it says of itself, every partition with its
    owner, state and per-namespace offsets, and the partitions without a ready owner
    (`unready`). Pure: `found` is what `reports` returns."""
    partitions = [
        _partition(p, owner, found.get(owner), membership, namespaces)
        for p, owner in sorted(membership.owners.items())
    ]
    members = [_member(url, found[url], partitions) for url in sorted(found)]
    generations = [m["generation"] for m in members if m["generation"] is not None]
    unready = [row["partition"] for row in partitions if row["state"] != READY]
    return {
        "source": membership.source,
        "group_state": membership.group_state,
        "generation": max(generations, default=None),
        "namespaces": list(namespaces),
        "members": members,
        "partitions": partitions,
        "unready": unready,
    }


def _member(url, report, partitions):
    answered = isinstance(report, dict)
    consumer = report["consumer"] if answered else {}
    return {
        "url": url,
        "answered": answered,
        "reason": None if answered else report,
        "consumer_alive": consumer.get("alive"),
        "lease": consumer.get("lease"),
        "last_error": consumer.get("last_error"),
        "generation": report["generation"] if answered else None,
        "partitions": [row["partition"] for row in partitions if row["owner"] == url],
        "restoring": [
            row["partition"]
            for row in partitions
            if row["owner"] == url and row["state"] == RESTORING
        ],
    }


def _partition(partition, owner, report, membership, namespaces):
    held = {}
    if isinstance(report, dict):
        held = {
            row["namespace"]: row
            for row in report["local"]
            if row["partition"] == partition
        }
    rows = {
        ns: _offsets(ns, partition, held.get(ns), membership) for ns in namespaces
    }
    state, reason = _state(owner, report, held, namespaces)
    return {
        "partition": partition,
        "owner": owner,
        "state": state,
        "reason": reason,
        "namespaces": rows,
    }


def _state(owner, report, held, namespaces):
    """(state, why it is not ready or None) of a partition across the cluster."""
    if owner is None:
        return UNOWNED, "no member holds it (a rebalance in progress?)"
    if not isinstance(report, dict):
        return UNREACHABLE, f"its owner {report or 'was not asked'}"
    consumer = report["consumer"]
    if not (consumer["alive"] and consumer["lease"]):
        return NOT_SERVING, "its owner's consumer is down or holds no lease"
    if any(ns not in held for ns in namespaces):
        return MOVING, "its owner has not taken it yet"
    if any(held[ns]["state"] == RESTORING for ns in namespaces):
        return RESTORING, "its owner is restoring it"
    return READY, None


def _offsets(namespace, partition, row, membership):
    """Applied, end and lag of one namespace's partition: the owner's own figures, or
    (`from`: "committed") the group's committed offset when the owner said nothing."""
    end = membership.ends.get((namespace, partition))
    if row is not None:
        end = row["end_offset"] if end is None else end
        applied, source = row["applied_offset"], "owner"
    else:
        applied, source = membership.committed.get((namespace, partition)), "committed"
    lag = None if end is None or applied is None else max(0, end - applied)
    return {
        "applied": applied,
        "end": end,
        "lag": lag,
        "from": source,
        "state": row["state"] if row else None,
        "restore_remaining": row["restore_remaining"] if row else None,
        "skipped": row["skipped"] if row else None,
        "misplaced": row["misplaced"] if row else None,
    }


def ask(url, headers):
    """The cluster-wide status as the instance at `url` sees it
    (/api/cluster/status); StoreUnavailable saying why there is none."""
    try:
        answer = requests.get(
            f"{url.rstrip('/')}/api/cluster/status",
            headers=headers,
            timeout=REPORT_TIMEOUT * 3,
            allow_redirects=False,
        )
    except requests.RequestException as exc:
        raise StoreUnavailable(f"{url} does not answer: {exc}") from exc
    if answer.status_code in (401, 403):
        raise StoreUnavailable(
            f"{url} answered {answer.status_code}: its status needs an admin key "
            "(KVSTORE_ADMIN_KEY)"
        )
    if answer.status_code != 200:
        raise StoreUnavailable(f"{url} answered {answer.status_code}: {answer.text}")
    return answer.json()
