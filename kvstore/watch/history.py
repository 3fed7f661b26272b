"""Whether the log still holds everything a watch resuming from a position needs.

"History removed" means: some record after the position is no longer in the log. The
store's producers write no transactions, so a partition's offsets have no holes but
those compaction makes (kafka-python skips transaction markers: a foreign
transactional producer's records look compacted too). Compaction never moves the log
start offset (it cleans segments in place), so holes are the only sign, and they are
looked for: from the resume position on, the records must follow one another. The
cleaner never touches a segment holding a record younger than the topic's
`min.compaction.lag.ms`; from the first record younger than half of it (the margin
absorbs clock skew, as in kvstore.conditions) nothing can be missing, so a recent
position is settled by one record and only an old one costs a scan.

A cache that pruned what it knew about records that took no effect cannot tell them
apart any more either (kvstore.watch.decisions): below its `decided_from` the history
counts as removed too. Either way the answer is 410 with the oldest position a resume
could start from, and the client lists again.
"""

import time

from kvstore import log, positions
from kvstore.errors import HistoryGone, StoreUnavailable
from kvstore.watch import decisions as decided

POLL_MS = 500
TIMEOUT = 60.0  # seconds a scan may take before the store gives up on it


class Scan:
    """One partition's verdict, fed the log's (offset, timestamp) from `start` on."""

    def __init__(self, start, end, young_after_ms):
        self.expected, self.end, self.young_after = start, end, young_after_ms
        self.whole = True
        self.oldest = start - 1  # the oldest position a resume may start from
        self.ahead = False  # the start is past the log's end
        self.done = start >= end

    def feed(self, offset, timestamp):
        if self.done:
            return
        if offset != self.expected:  # [expected, offset) is gone
            self.whole, self.oldest = False, offset - 1
        self.expected = offset + 1
        if timestamp > self.young_after or self.expected >= self.end:
            self.done = True  # nothing from here on can have been compacted

    def finish(self):
        """At the end of what the log returned: a hole up to the end counts too."""
        if self.expected < self.end:
            self.whole, self.oldest = False, self.end - 1
        self.done = True


def check(settings, namespace, starts, lag_ms, decisions):
    """Raise HistoryGone (410) unless the log and the caches still hold every record
    of each partition from `starts` ({partition: next offset wanted}) on."""
    oldest, ahead = {}, []
    for partition, start in starts.items():
        try:
            decisions.check_known(namespace, partition, start)
        except decided.Forgotten as gone:
            oldest[partition] = gone.decided_from - 1
        except decided.Undecided:
            pass  # the stream asks again for each record that needs it
    for partition, verdict in scan(
        settings, settings.topic(namespace), starts, lag_ms
    ).items():
        gone = verdict.oldest
        oldest[partition] = max(gone, oldest.get(partition, gone))
        if verdict.ahead:
            ahead.append(partition)
    if oldest:
        vector = positions.Vector.of(namespace, oldest)
        what = (
            f"This position is past the end of partition {ahead[0]}'s log (a "
            "position from another store, or from before its topic was made "
            "again)"
            if ahead
            else "Compaction has removed part of the history from this position on"
        )
        raise HistoryGone(
            f"{what}; list again and watch from the list's position "
            "(oldest_position: the oldest position a watch of these partitions may "
            "resume from).",
            vector,
        )


def scan(settings, topic, starts, lag_ms, now_ms=None):
    """{partition: its Scan} of the partitions whose history from `starts` has holes
    (or which start past the log's end): `oldest` is the oldest resumable position."""
    now_ms = time.time() * 1000 if now_ms is None else now_ms
    young_after = now_ms - lag_ms / 2 if lag_ms else float("inf")
    reader = log.PartitionReader(settings, topic, list(starts))
    try:
        bounds = reader.offsets()
        scans = {p: Scan(s, bounds[p][1], young_after) for p, s in starts.items()}
        for partition, start in starts.items():
            if start > bounds[partition][1]:  # past the end: another log's position
                scans[partition].whole = False
                scans[partition].ahead = True
                scans[partition].oldest = bounds[partition][1] - 1
                scans[partition].done = True
            else:
                reader.seek(partition, start)
        _feed(reader, scans)
    finally:
        reader.close()
    return {p: scan for p, scan in scans.items() if not scan.whole}


def _feed(reader, scans):
    deadline = time.monotonic() + TIMEOUT
    while not all(scan.done for scan in scans.values()):
        if time.monotonic() > deadline:
            raise StoreUnavailable("The log could not be read in time.")
        for partition, records in reader.poll(POLL_MS).items():
            for record in records:
                scans[partition].feed(record.offset, record.timestamp)
        for partition, scan in scans.items():
            # The log's last record is in its active segment, which is never cleaned:
            # the reader reaches the end through it, or past what it cannot return.
            if not scan.done and reader.position(partition) >= scan.end:
                scan.finish()
            if scan.done:
                reader.pause(partition)
