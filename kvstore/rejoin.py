"""When the consumer process must join its group again with a fresh Kafka client:
Kafka fenced its member, or it has held no membership lease for so long that the
group coordinator has surely dropped it and the client did not find its way back.

kafka-python rejoins by itself after an ordinary rebalance, but not from every state
a stall can leave it in (a fenced static member raises from every poll; after a
SIGSTOP it has been seen to stay without a lease for good). The lease keeps that
safe, the store answering 503; rejoining keeps it live.
"""

import time

from kvstore.errors import StoreUnavailable

FENCINGS_ALLOWED = 5  # within FENCING_WINDOW: more is another process with our id
FENCING_WINDOW = 60.0


class Watchdog:
    """`overdue(lease)` is true once no lease has been held for `after` seconds;
    `fenced()` counts fencings and raises StoreUnavailable when they come so often that
    another consumer must be using this member's group.instance.id."""

    def __init__(self, session_timeout_ms, clock=time.monotonic):
        # A rebalance ends within a session timeout of its start (members that do
        # not rejoin by then are dropped), and holds no lease meanwhile: twice that,
        # and more, is no rebalance.
        self.after = max(2 * session_timeout_ms / 1000 + 2, 5.0)
        self.clock = clock
        self._without_since = None
        self._fencings = []

    def overdue(self, lease_until, now_lease):
        """`lease_until` on the lease clock (None: none held), `now_lease` that clock
        now."""
        if lease_until is not None and now_lease < lease_until:
            self._without_since = None
            return False
        if self._without_since is None:
            self._without_since = self.clock()
        return self.clock() - self._without_since >= self.after

    def fenced(self):
        now = self.clock()
        self._fencings = [t for t in self._fencings if now - t < FENCING_WINDOW]
        self._fencings.append(now)
        if len(self._fencings) > FENCINGS_ALLOWED:
            raise StoreUnavailable(
                f"Kafka fenced this member {len(self._fencings)} times within "
                f"{FENCING_WINDOW:.0f} s: another consumer uses the same "
                "group.instance.id (KVSTORE_ADVERTISED_URL must differ per instance)"
            )

    def rejoined(self):
        self._without_since = None
