"""Collections across the cluster: a list is gathered from every partition's owner in
parallel and merged in key order. A partition that cannot be read is named in a 503,
never silently left out."""

import concurrent.futures
import heapq
import threading

import requests

from kvstore import cache, routing
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


def remote_rows(peer, namespace, partitions, after, limit):
    """EntryRows of `partitions` from `peer`, which must serve them itself."""
    try:
        answer = _session().get(
            f"{peer}/api/internal/entries/{namespace}",
            params={
                "partitions": ",".join(map(str, partitions)),
                "after": after,
                "limit": limit,
            },
            headers=peer_headers(),
            timeout=PEER_TIMEOUT,
            allow_redirects=False,
        )
        if answer.status_code == 200:
            return [cache.EntryRow(*row) for row in answer.json()["entries"]]
        reason = f"{peer} answered {answer.status_code}"
    except (requests.RequestException, ValueError, KeyError, TypeError) as exc:
        reason = f"{peer} unreachable: {exc.__class__.__name__}"
    raise NotServing(
        f"Partitions {partitions} of {namespace!r} cannot be read: {reason}.",
        code="partitions_unavailable",
        partition=partitions[0],
    )


def peer_headers():
    """Peers never call each other anonymously: the cluster secret, if there is one."""
    secret = store_settings().cluster_secret
    return {"Authorization": f"Bearer {secret}"} if secret else {}


def _session():
    session = getattr(_local, "session", None)
    if session is None:
        session = _local.session = requests.Session()
    return session


def merge(local_rows, where, namespace, after, limit):
    """The first `limit` EntryRows in key order from this instance's rows and every
    peer's, fetched in parallel."""
    by_peer = {}
    for partition, peer in where.items():
        if peer is not None:
            by_peer.setdefault(peer, []).append(partition)
    futures = [
        _pool.submit(remote_rows, peer, namespace, parts, after, limit)
        for peer, parts in by_peer.items()
    ]
    streams = [local_rows] + [future.result() for future in futures]
    return list(heapq.merge(*streams, key=lambda row: row.key))[:limit]
