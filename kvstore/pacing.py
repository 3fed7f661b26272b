"""How long the consumer's fetches may wait at the broker for more records: not at all
while writes come one at a time, a moment while many writers write at once.

kafka-python's network thread sends the next fetch as soon as the last one returns, and
a fetch that asks for at least one byte returns with the first record. Under many
concurrent single-record PUTs every fetch then carries about one record, and the
consumer and the broker pay a whole fetch per record (docs/PROFILES.md §9). Concurrent
writes show in the consumer's polls, which then find several records at once; while
they do, fetches ask the broker to wait up to BATCH_WAIT_MS for BATCH_BYTES, so each
carries several. A lone writer's records come one per poll, and its fetches keep
returning at once: a wait would add itself to every one of its writes.
"""

import time

BATCH_WAIT_MS, BATCH_BYTES = 2, 600  # a few single-record batches of small values
LOOK_EVERY = 1.0  # seconds of polls each decision is made on
# Records per poll that brought any, to start batching and to go on with it (lower, so
# a load at the edge does not flip the mode every second).
START_AT, KEEP_AT = 2.0, 1.5
MIN_RATE = 100  # records per second: below this, fetches cost little either way


class FetchPacing:
    """Decides, from the records each poll brought, whether fetches should wait for
    more: `observe` after every poll returns True or False when the decision changes."""

    def __init__(self, clock=time.monotonic):
        self.batching = False
        self._clock = clock
        self._since = clock()
        self._polls = self._records = 0

    def observe(self, records):
        if records:
            self._polls += 1
            self._records += records
        now = self._clock()
        elapsed = now - self._since
        if elapsed < LOOK_EVERY:
            return None
        per_poll = self._records / self._polls if self._polls else 0.0
        rate = self._records / elapsed
        self._since, self._polls, self._records = now, 0, 0
        threshold = KEEP_AT if self.batching else START_AT
        batching = rate >= MIN_RATE and per_poll >= threshold
        if batching == self.batching:
            return None
        self.batching = batching
        return batching
