"""What this instance knows of the cluster: members, generation, partition → owner, and for the
partitions it holds, how far its cache is (applied position, end offset, lag, state)."""
import time

from kvstore import cache


def describe(reader, settings):
    """A JSON-ready description, from this instance's cache (None parts while the consumer never ran)."""
    with reader.snapshot() as view:
        member = view.member() if view is not None else None
        group = view.group() if member is not None else None
        topics = view.topics() if member is not None else {}
        held = view.partitions() if member is not None else []
    alive = member is not None and time.time() - member[1] <= settings.heartbeat_timeout
    return {
        "instance": member[0] if member is not None else settings.advertised_url,
        "consumer": {"alive": alive, "heartbeat_age": None if member is None else round(time.time() - member[1], 3)},
        "generation": group.generation if group else None,
        "members": list(group.members) if group else [],
        "namespaces": {ns: {"topic": topic, "partitions": count} for ns, (topic, count, _) in topics.items()},
        "owners": {str(p): owner for p, owner in enumerate(group.owners)} if group else {},
        "local": [
            {"namespace": ns, "partition": p, "state": state, "applied_offset": position,
             "end_offset": end, "lag": None if end is None else max(0, end - position)}
            for ns, p, state, position, _target, _applied_at, _skipped, end in held if state != cache.REVOKED
        ],
    }
