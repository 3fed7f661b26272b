"""What this instance knows of the cluster: members, generation, partition → owner,
and for the partitions it holds, how far its cache is (applied position, end offset,
lag, state, records passed over)."""

import os
import threading
import time

from kvstore import cache, lease, log, routing
from kvstore.errors import StoreUnavailable

# An answer about lag must not hang on a slow Kafka: past this, the consumer's last
# seen end offsets are shown instead (and said to be).
END_OFFSETS_TIMEOUT_MS = 3000
_admins = {}
_admin_lock = threading.Lock()


def describe(reader, settings, admin=None):
    """A JSON-ready description, from this instance's cache (None parts while the
    consumer never ran). With an `admin` (kvstore.log.Admin), end offsets and lag come
    fresh from Kafka; else from what the consumer last saw."""
    with reader.snapshot() as view:
        member = view.member() if view is not None else None
        group = view.group() if member is not None else None
        topics = view.topics() if member is not None else {}
        held = view.partitions() if member is not None else []
        refused = routing.refused_owners(view, settings) if member is not None else {}
    held = [row for row in held if row.state != cache.REVOKED]
    ends, source = _end_offsets(admin, topics, held)
    age = None if member is None else round(time.time() - member.heartbeat, 3)
    return {
        "instance": member.url if member is not None else settings.advertised_url,
        "consumer": {
            "alive": routing.consumer_alive(member, settings),
            "lease": lease.held(member),
            "lease_left": _lease_left(member),
            "heartbeat_age": age,
            "last_error": member.last_error if member is not None else None,
            "draining": member is not None and member.draining_since is not None,
            "records_applied": member.applied if member is not None else 0,
            "rebalances": member.rebalances if member is not None else 0,
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
        "refused_owners": {str(p): owner for p, owner in refused.items()},
        "end_offsets_from": source,
        "local": [_local(row, ends) for row in held],
    }


def _lease_left(member):
    """Seconds of membership lease left, or None without one."""
    if member is None or member.lease_until is None:
        return None
    return round(max(0.0, member.lease_until - lease.now()), 3)


def _end_offsets(admin, topics, held):
    """({(namespace, partition): end offset}, "kafka"), asked of Kafka now; or the
    consumer's last seen ones, "consumer", without an admin or when Kafka does not
    answer."""
    recorded = {(row.namespace, row.partition): row.end_offset for row in held}
    if admin is None or not held:
        return recorded, "consumer"
    fresh = {}
    try:
        for namespace in {row.namespace for row in held}:
            partitions = [row.partition for row in held if row.namespace == namespace]
            ends = admin.offsets(topics[namespace].topic, partitions)
            fresh.update({(namespace, p): end for p, end in ends.items()})
    except (StoreUnavailable, KeyError):
        return recorded, "consumer"
    return fresh, "kafka"


def _local(row, ends):
    end = ends.get((row.namespace, row.partition))
    return {
        "namespace": row.namespace,
        "partition": row.partition,
        "state": row.state,
        "applied_offset": row.position,
        "end_offset": end,
        "lag": None if end is None else max(0, end - row.position),
        # The restore runs to the end offset seen at assignment.
        "restore_remaining": (
            max(0, row.target - row.position) if row.state == cache.RESTORING else 0
        ),
        "skipped": row.skipped,
        "misplaced": row.misplaced,
    }


def shared_admin(settings):
    """This process's Admin for offset look-ups (made once, after fork), or None while
    Kafka cannot be reached."""
    key = (os.getpid(), id(settings))
    with _admin_lock:
        if key not in _admins:
            try:
                _admins[key] = _LockedAdmin(
                    log.open_admin(settings, timeout_ms=END_OFFSETS_TIMEOUT_MS)
                )
            except StoreUnavailable:
                return None
        return _admins[key]


class _LockedAdmin:
    """One look-up at a time: the web workers' threads share the admin client. The
    look-ups of `kvstore.log.Admin` the web side makes: end offsets, and the topics
    and the group for the cluster-wide status."""

    def __init__(self, admin):
        self._admin, self._lock = admin, threading.Lock()

    def offsets(self, topic, partitions):
        with self._lock:
            return self._admin.offsets(topic, partitions)

    def describe(self, names):
        with self._lock:
            return self._admin.describe(names)

    def describe_group(self, group_id):
        with self._lock:
            return self._admin.describe_group(group_id)
