"""Which records of a partition took no effect: conditional records the log rejected
and repeats of an idempotent write. Only a cache that applied them can say
(kvstore.apply records them), so a watch asks this instance's own cache when it has
applied that far, else the partition's owner (GET /api/internal/decisions).

Every applier decides alike (docs/SAFETY.md), so any cache past the records will do;
below a cache's `decided_from` it pruned what it knew, and the answer is "unknown".
"""

import requests

from kvstore import cache, gather, routing, waiting

PEER_TIMEOUT = 2.0


class Undecided(Exception):
    """Nobody could say now (the owner is moving, down, or not that far yet): ask
    again later."""


class Forgotten(Exception):
    """What took effect there is no longer known (pruned): the history is gone for a
    watch, as if compacted."""

    def __init__(self, decided_from):
        super().__init__(f"decisions known from offset {decided_from}")
        self.decided_from = decided_from


class Decisions:
    def __init__(self, settings, reader, changes):
        self.settings, self.reader, self.changes = settings, reader, changes

    def no_effect(self, namespace, partition, start, end, seconds=1.0):
        """The offsets in [start, end) whose records took no effect. Undecided when
        no cache can tell within `seconds`; Forgotten below what it still knows."""
        if start >= end:
            return set()
        if self.applied(namespace, partition, end) or self._owned_and_reached(
            namespace, partition, end, seconds
        ):
            return self.local(namespace, partition, start, end)
        return self._ask_owner(namespace, partition, start, end, seconds)

    def check_known(self, namespace, partition, start):
        """Forgotten when what took effect from `start` on is no longer known to the
        cache that would say; Undecided when nobody can say now."""
        if self.applied(namespace, partition, start + 1) or self._here(
            namespace, partition
        ):
            self.local(namespace, partition, start, start)
        else:
            self._ask_owner(namespace, partition, start, start, 0)

    def local(self, namespace, partition, start, end):
        """What this instance's cache says of [start, end) (it has applied it)."""
        with self.reader.snapshot() as view:
            offsets, decided_from = view.no_effect(namespace, partition, start, end)
        if start < decided_from:
            raise Forgotten(decided_from)
        return offsets

    def applied(self, namespace, partition, end):
        """Whether this cache has applied everything below `end`."""
        conn = self.reader.connection()
        state = cache.position(conn, namespace, partition) if conn else None
        return state is not None and state.position >= end

    def _here(self, namespace, partition):
        with self.reader.snapshot() as view:
            if view is None:
                return False
            return routing.locate(view, self.settings, namespace, partition).here

    def _owned_and_reached(self, namespace, partition, end, seconds):
        return self._here(namespace, partition) and waiting.until_applied(
            self.reader, self.changes, namespace, partition, end - 1, seconds
        )

    def _ask_owner(self, namespace, partition, start, end, seconds):
        with self.reader.snapshot() as view:
            owner = routing.owner_of(view, self.settings, partition) if view else None
        if owner is None:
            raise Undecided(f"partition {partition} has no owner to ask")
        try:
            answer = gather.session().get(
                f"{owner}/api/internal/decisions/{namespace}",
                params={
                    "partition": partition,
                    "from": start,
                    "to": end,
                    "wait": int(seconds + 0.999),
                },
                headers=gather.peer_headers(),
                timeout=PEER_TIMEOUT + seconds,
                allow_redirects=False,
            )
            body = answer.json()
            if answer.status_code == 410:
                raise Forgotten(int(body["decided_from"]))
            if answer.status_code == 200 and body["through"] >= end:
                return set(body["no_effect"])
        except (requests.RequestException, ValueError, KeyError, TypeError) as exc:
            raise Undecided(f"{owner}: {exc.__class__.__name__}") from None
        raise Undecided(f"{owner} answered {answer.status_code}")


def answer(decisions, namespace, partition, start, end, seconds):
    """The owner's side of GET /api/internal/decisions: (the no-effect offsets of
    [start, through), through), where `through` is as far as this cache has applied
    towards `end` within `seconds`; Forgotten below what it knows."""
    if start < end and not decisions.applied(namespace, partition, end):
        waiting.until_applied(
            decisions.reader, decisions.changes, namespace, partition, end - 1, seconds
        )
    conn = decisions.reader.connection()
    state = cache.position(conn, namespace, partition) if conn else None
    through = max(start, min(end, state.position if state else 0))
    return decisions.local(namespace, partition, start, through), through
