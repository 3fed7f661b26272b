"""Collections across the cluster: a list is gathered from every partition's owner in
parallel and merged in key order, with the positions each owner's page reflects. A
partition that cannot be read is named in a 503, never silently left out."""

import concurrent.futures
import dataclasses
import heapq
import threading

import requests

from kvstore import cache, positions, routing
from kvstore.conf import store_settings
from kvstore.errors import NotServing

PEER_TIMEOUT = 5.0
_local = threading.local()
_pool = concurrent.futures.ThreadPoolExecutor(
    max_workers=8, thread_name_prefix="gather"
)


def plan(view, settings, namespace):
    """{partition: None when served here, else the owning peer's URL} for every
    partition, or NotServing naming the partitions nobody can serve now."""
    partitions = routing.topic_facts(view, namespace, settings).partitions
    placements = [
        routing.locate(view, settings, namespace, p) for p in range(partitions)
    ]
    missing = [placement.partition for placement in placements if placement.unavailable]
    if missing:
        raise NotServing(
            f"Partitions {missing} of {namespace!r} cannot be read right now.",
            code="partitions_unavailable",
            partition=missing[0],
        )
    return {placement.partition: placement.owner for placement in placements}


@dataclasses.dataclass(frozen=True)
class Ask:
    """One page asked of every owner: keys after `after` starting with `prefix`, at
    most `limit`, once each owner has applied `at_least` (a positions.Vector or None),
    waiting at most `seconds` for it."""

    namespace: str
    after: str
    limit: int
    prefix: str = ""
    at_least: positions.Vector | None = None
    seconds: float | None = None

    def params(self, partitions):
        """The query of the peer endpoint for `partitions`."""
        params = {
            "partitions": ",".join(map(str, partitions)),
            "after": self.after,
            "limit": self.limit,
        }
        if self.prefix:
            params["prefix"] = self.prefix
        if self.at_least is not None:
            mine = {p: o for p, o in self.at_least.offsets if p in partitions}
            params["min_position"] = str(positions.Vector.of(self.namespace, mine))
        if self.seconds is not None:
            params["wait"] = f"{self.seconds:g}"
        return params


def remote_rows(peer, ask, partitions):
    """(EntryRows of `partitions` from `peer`, which must serve them itself,
    {partition: last offset applied})."""
    try:
        answer = session().get(
            f"{peer}/api/internal/entries/{ask.namespace}",
            params=ask.params(partitions),
            headers=peer_headers(),
            timeout=PEER_TIMEOUT + (ask.seconds or 0),
            allow_redirects=False,
        )
        if answer.status_code == 200:
            body = answer.json()
            applied = {int(p): int(o) for p, o in body["positions"].items()}
            return [cache.EntryRow(*row) for row in body["entries"]], applied
        reason = f"{peer} answered {answer.status_code}"
        if answer.status_code == 503:
            reason += f" ({answer.json().get('code')})"
    except (requests.RequestException, ValueError, KeyError, TypeError) as exc:
        reason = f"{peer} unreachable: {exc.__class__.__name__}"
    raise NotServing(
        f"Partitions {partitions} of {ask.namespace!r} cannot be read: {reason}.",
        code="partitions_unavailable",
        partition=partitions[0],
    )


def peer_headers():
    """Peers never call each other anonymously: the cluster secret, if there is one."""
    secret = store_settings().cluster_secret
    return {"Authorization": f"Bearer {secret}"} if secret else {}


def session():
    """This thread's HTTP session with the peers (connections kept alive)."""
    session = getattr(_local, "session", None)
    if session is None:
        session = _local.session = requests.Session()
    return session


def merge(local_rows, where, ask):
    """(The first `ask.limit` EntryRows in key order from this instance's rows and
    every peer's, fetched in parallel; {partition: last offset applied} of the peers'
    partitions)."""
    by_peer = {}
    for partition, peer in where.items():
        if peer is not None:
            by_peer.setdefault(peer, []).append(partition)
    futures = [
        _pool.submit(remote_rows, peer, ask, parts) for peer, parts in by_peer.items()
    ]
    answers = [future.result() for future in futures]
    streams = [local_rows] + [rows for rows, _ in answers]
    applied = {p: o for _, offsets in answers for p, o in offsets.items()}
    merged = heapq.merge(*streams, key=lambda row: row.key)
    return list(merged)[: ask.limit], applied
