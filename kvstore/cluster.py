"""What this instance knows of the cluster: members, generation, partition → owner,
and for the partitions it holds, how far its cache is (applied position, end offset,
lag, state)."""

import time

from kvstore import cache, lease, routing


def describe(reader, settings):
    """A JSON-ready description, from this instance's cache (None parts while the
    consumer never ran)."""
    with reader.snapshot() as view:
        member = view.member() if view is not None else None
        group = view.group() if member is not None else None
        topics = view.topics() if member is not None else {}
        held = view.partitions() if member is not None else []
    age = None if member is None else round(time.time() - member.heartbeat, 3)
    return {
        "instance": member.url if member is not None else settings.advertised_url,
        "consumer": {
            "alive": routing.consumer_alive(member, settings),
            "lease": lease.held(member),
            "lease_left": _lease_left(member),
            "heartbeat_age": age,
        },
        "generation": group.generation if group else None,
        "members": list(group.members) if group else [],
        "namespaces": {
            ns: {"topic": facts.topic, "partitions": facts.partitions}
            for ns, facts in topics.items()
        },
        "owners": (
            {str(p): owner for p, owner in enumerate(group.owners)} if group else {}
        ),
        "local": [_local(row) for row in held if row.state != cache.REVOKED],
    }


def _lease_left(member):
    """Seconds of membership lease left, or None without one."""
    if member is None or member.lease_until is None:
        return None
    return round(max(0.0, member.lease_until - lease.now()), 3)


def _local(row):
    lag = None if row.end_offset is None else max(0, row.end_offset - row.position)
    return {
        "namespace": row.namespace,
        "partition": row.partition,
        "state": row.state,
        "applied_offset": row.position,
        "end_offset": row.end_offset,
        "lag": lag,
    }
