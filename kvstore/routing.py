"""Routing: which partition a key lives in, and whether this instance may answer for it now.

An instance answers for a partition only while its consumer is alive and holds the partition restored.
"""
import dataclasses
import ipaddress
import logging
import time
import unicodedata
from urllib.parse import urlsplit

from kvstore import cache
from kvstore.errors import InvalidKey, NotOwner, NotServing
from kvstore.partitioner import partition_for

logger = logging.getLogger(__name__)
MAX_KEY_BYTES = 255


@dataclasses.dataclass(frozen=True)
class Route:
    namespace: str
    key: str
    topic: str
    partition: int
    max_message_bytes: int


def validate_key(key):
    """Raise InvalidKey unless `key` is 1 to 255 bytes of UTF-8 without control characters."""
    if not key:
        raise InvalidKey("The key is empty.")
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise InvalidKey(f"The key is longer than {MAX_KEY_BYTES} bytes in UTF-8.")
    if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in key):
        raise InvalidKey("The key contains a control character.")


def check_consumer(view, settings):
    """Raise NotServing unless this instance's consumer process is alive (fresh heartbeat)."""
    member = view.member() if view is not None else None
    if member is None:
        raise NotServing("This instance's consumer process has not started.", code="consumer_unavailable", wait=2)
    if time.time() - member[1] > settings.heartbeat_timeout:
        raise NotServing("This instance's consumer process is not running.", code="consumer_unavailable", wait=2)


def topic_facts(view, namespace):
    facts = view.topic(namespace)
    if facts is None:
        raise NotServing(f"The consumer has not described namespace {namespace!r} yet.", code="consumer_unavailable")
    return facts


def route(view, settings, namespace, key):
    """The Route of `key` if this instance serves its partition now; NotOwner if a peer does;
    else NotServing."""
    validate_key(key)
    check_consumer(view, settings)
    topic, partitions, max_message_bytes = topic_facts(view, namespace)
    partition = partition_for(key, partitions)
    check_partition(view, settings, namespace, partition)
    return Route(namespace, key, topic, partition, max_message_bytes)


def owner_of(view, settings, partition):
    """The allowed peer URL that owns `partition` by the group's last assignment, or None."""
    group = view.group()
    owner = group.owner(partition) if group is not None else None
    if owner is None or owner == settings.advertised_url:
        return None
    if not peer_allowed(settings, owner):
        logger.warning("partition %s: owner %s is not in KVSTORE_PEER_ALLOWLIST; not redirecting", partition, owner)
        return None
    return owner


def peer_allowed(settings, url):
    """Only peers on the allow-list (by default: any loopback address) are redirect targets."""
    if settings.peer_allowlist:
        return url.rstrip("/") in settings.peer_allowlist
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_partition(view, settings, namespace, partition):
    held = view.partition(namespace, partition)
    if held is None or held[0] == cache.REVOKED:
        owner = owner_of(view, settings, partition)
        if owner is not None:
            raise NotOwner(owner, partition)
        raise NotServing(
            f"Partition {partition} of {namespace!r} is moving between instances; its owner is not known yet.",
            code="partition_moving", partition=partition,
        )
    if held[0] == cache.RESTORING:
        raise NotServing(
            f"Partition {partition} of {namespace!r} is still being restored ({held[1]} of {held[2]}).",
            code="partition_restoring", partition=partition,
        )
