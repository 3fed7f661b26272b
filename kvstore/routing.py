"""Routing: which partition a key lives in, and where it can be served now.

`locate` *returns* the answer (here, a peer's URL, or why nobody can serve it now);
`route` is for callers that go on only when the answer is "here". An instance answers
for a partition only while its consumer process is alive, holds the membership lease
(kvstore.lease) and holds the partition restored. A key another instance owns is
redirected there even when this instance's own consumer is down.
"""

import dataclasses
import logging
import time
import unicodedata

from kvstore import cache, lease, peers
from kvstore.errors import InvalidKey, NotOwner, NotServing
from kvstore.partitioner import partition_for

logger = logging.getLogger(__name__)
MAX_KEY_BYTES = 255


@dataclasses.dataclass(frozen=True)
class Route:
    """A key this instance serves now, and what writing it needs."""

    namespace: str
    key: str
    topic: str
    partition: int
    max_message_bytes: int
    position: int = 0  # the next offset the cache applies, as this read saw it


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where a partition is served now: here, by the peer at `owner`, or (`unavailable`,
    the NotServing to answer with) by nobody this instance can name."""

    partition: int
    owner: str | None = None
    unavailable: NotServing | None = None
    position: int = 0  # here: the next offset the cache applies

    @property
    def here(self):
        return self.owner is None and self.unavailable is None


def validate_key(key):
    """Raise InvalidKey unless `key` is 1 to 255 bytes of UTF-8 without control
    characters."""
    if not key:
        raise InvalidKey("The key is empty.")
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise InvalidKey(f"The key is longer than {MAX_KEY_BYTES} bytes in UTF-8.")
    if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in key):
        raise InvalidKey("The key contains a control character.")


def consumer_alive(member, settings):
    """The one rule for "this instance's consumer process is alive": it has run, its
    process exists and its heartbeat is recent."""
    return (
        member is not None
        and time.time() - member.heartbeat <= settings.heartbeat_timeout
        and lease.process_alive(member.pid)
    )


def serving(member, settings):
    """Whether this instance may answer for the partitions it holds: a live consumer
    that holds the membership lease."""
    return consumer_alive(member, settings) and lease.held(member)


def check_consumer(view, settings):
    """Raise NotServing unless this instance's consumer process is alive and holds the
    membership lease; the body carries the consumer's last error (`reason`) when it
    recorded one."""
    member = view.member() if view is not None else None
    if not consumer_alive(member, settings):
        started = member is not None
        reason = member.last_error if started else None
        error = NotServing(
            "This instance's consumer process "
            + ("is not running." if started else "has not started.")
            + (f" Its last error: {reason}" if reason else ""),
            code="consumer_unavailable",
            wait=2,
        )
        if reason:
            error.extra = {"reason": reason}
        raise error
    if not lease.held(member):
        raise NotServing(
            "This instance has not heard from the group coordinator recently enough "
            "to answer for its partitions.",
            code="lease_expired",
            wait=1,
        )


def topic_facts(view, namespace, settings):
    """The namespace's TopicFacts, as the consumer recorded them."""
    facts = view.topic(namespace) if view is not None else None
    if facts is None:
        # A consumer that stopped before describing the topics says why.
        check_consumer(view, settings)
        raise NotServing(
            f"The consumer has not described namespace {namespace!r} yet.",
            code="consumer_unavailable",
        )
    return facts


def partition_of(view, settings, namespace, key):
    """The partition of `key`; InvalidKey for a bad key, NotServing when this instance
    cannot tell (its consumer never described the namespace)."""
    validate_key(key)
    return partition_for(key, topic_facts(view, namespace, settings).partitions)


def locate(view, settings, namespace, partition):
    """The Placement of one partition as this instance sees it now."""
    held = view.partition(namespace, partition)
    if held is None or held.state == cache.REVOKED:
        owner = owner_of(view, settings, partition)
        if owner is not None:
            return Placement(partition, owner=owner)
        unowned = _unowned(view, settings, namespace, partition)
        return Placement(partition, unavailable=unowned)
    try:
        check_consumer(view, settings)
    except NotServing as exc:
        exc.extra = {**exc.extra, "partition": partition}
        exc.headers = {"X-Kvstore-Partition": str(partition)}
        return Placement(partition, unavailable=exc)
    if held.state == cache.RESTORING:
        restoring = NotServing(
            f"Partition {partition} of {namespace!r} is still being restored "
            f"({held.position} of {held.target}).",
            code="partition_restoring",
            partition=partition,
        )
        return Placement(partition, unavailable=restoring)
    return Placement(partition, position=held.position)


def locate_key(view, settings, namespace, key):
    """The Placement of `key`'s partition (raises as `partition_of` does)."""
    return locate(
        view, settings, namespace, partition_of(view, settings, namespace, key)
    )


def route(view, settings, namespace, key):
    """The Route of `key` if this instance serves its partition now; NotOwner if a peer
    does; else NotServing."""
    placement = locate_key(view, settings, namespace, key)
    if placement.owner is not None:
        raise NotOwner(placement.owner, placement.partition)
    if placement.unavailable is not None:
        raise placement.unavailable
    facts = view.topic(namespace)
    return Route(
        namespace,
        key,
        facts.topic,
        placement.partition,
        facts.max_message_bytes,
        placement.position,
    )


def _unowned(view, settings, namespace, partition):
    """The NotServing for a partition with no owner this instance can redirect to."""
    group = view.group()
    refused = group.owner(partition) if group is not None else None
    if refused is not None and refused != settings.advertised_url:
        return NotServing(
            f"Partition {partition} of {namespace!r} is owned by {refused}, which is "
            "not on this instance's KVSTORE_PEER_ALLOWLIST.",
            code="owner_not_allowed",
            partition=partition,
        )
    return NotServing(
        f"Partition {partition} of {namespace!r} is moving between instances; "
        "its owner is not known yet.",
        code="partition_moving",
        partition=partition,
    )


def owner_of(view, settings, partition):
    """The allowed peer URL that owns `partition` by the group's last assignment, or
    None."""
    group = view.group()
    owner = group.owner(partition) if group is not None else None
    if owner is None or owner == settings.advertised_url:
        return None
    if not peer_allowed(settings, owner):
        logger.warning(
            "partition %s: owner %s is not in KVSTORE_PEER_ALLOWLIST; not redirecting",
            partition,
            owner,
        )
        return None
    return owner


def peer_allowed(settings, url):
    """Only peers on the allow-list (by default: any loopback address) are redirect
    targets, and only as strictly shaped base URLs."""
    url = peers.base_url(url)
    if url is None:
        return False
    if settings.peer_allowlist:
        return url in settings.peer_allowlist
    return peers.is_loopback(url)


def refused_owners(view, settings):
    """{partition: owner URL} of partitions whose owner is a peer this instance may not
    redirect to (a 503 for every request of theirs here)."""
    group = view.group() if view is not None else None
    if group is None:
        return {}
    return {
        partition: owner
        for partition, owner in enumerate(group.owners)
        if owner is not None
        and owner != settings.advertised_url
        and not peer_allowed(settings, owner)
    }
