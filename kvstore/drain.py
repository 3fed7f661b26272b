"""A draining stop: after the consumer left the group, the instance keeps answering
(503 for what it held, 307 once the new owners are known) until the other members know
the new map, so no peer sends a client to a closed port. Consumer-process side.
"""

import logging
import time

import requests

from kvstore import gather, ownership, routing

logger = logging.getLogger(__name__)
TIMEOUT = 10.0  # at most this long: a peer that never learns must not hold the stop
PEER_TIMEOUT = 1.0
# A peer whose consumer does not follow the group (stopping too, or down): its map will
# not change, so waiting for it to learn the new one is in vain.
STOPPING = "stopping"


def until_peers_know(settings, writer, view, timeout=TIMEOUT):
    """Wait until every live peer of `view` (the last GroupView this member had)
    reports a later generation without this instance; record the newest such view in
    the cache so this instance redirects to the new owners meanwhile."""
    if view is None:
        return
    me = settings.advertised_url
    pending = {
        url for url in view.members if url != me and routing.peer_allowed(settings, url)
    }
    deadline, newest = time.monotonic() + timeout, view
    while pending and time.monotonic() < deadline:
        for peer in sorted(pending):
            seen = _view_of(peer)
            if seen is None or seen is STOPPING:
                # Gone or stopping too: it will learn the map when back.
                pending.discard(peer)
            elif seen.generation > view.generation and me not in seen.members:
                pending.discard(peer)
                if seen.generation > newest.generation:
                    newest = seen
                    writer.set_group(newest)
        if pending:
            time.sleep(0.1)
    logger.info(
        "drained: peers %s at generation %s",
        "all know" if not pending else f"{sorted(pending)} do not yet",
        newest.generation,
    )


def _view_of(peer):
    """The GroupView a peer reports, STOPPING when its consumer does not follow the
    group, or None when it does not answer."""
    try:
        answer = requests.get(
            f"{peer}/api/internal/group",
            timeout=PEER_TIMEOUT,
            headers=gather.peer_headers(),
        )
        described = answer.json()
        if described.get("following") is False:
            return STOPPING
        owners = [
            described["owners"].get(str(p)) for p in range(len(described["owners"]))
        ]
        return ownership.GroupView(
            described["generation"] or 0, tuple(owners), tuple(described["members"])
        )
    except (requests.RequestException, ValueError, KeyError, TypeError, AttributeError):
        return None
