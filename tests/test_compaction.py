"""A topic made by `kvstore_init` is really compacted: the broker's cleaner removes
superseded values and tombstoned keys from the log, as read back by a plain consumer."""

import time

from django.core.management import call_command

from tests import rawlog

# Make the cleaner act within seconds: short segments, any dirt is worth cleaning,
# tombstones kept 0.5 s.
FAST_CLEANING = (
    ("segment.ms", "300"),
    ("min.cleanable.dirty.ratio", "0.01"),
    ("delete.retention.ms", "500"),
    ("min.compaction.lag.ms", "0"),
)


def test_cleaner_removes_superseded_values_and_tombstones(
    store_settings, with_settings
):
    settings = with_settings(topic_configs=FAST_CLEANING, partitions=1)
    call_command("kvstore_init")
    topic, bootstrap = settings.topic("kv"), list(settings.bootstrap_servers)
    rawlog.produce(
        bootstrap,
        topic,
        [("a", "1"), ("b", "1"), ("a", "2"), ("c", "1"), ("b", None), ("a", "3")],
    )
    before = rawlog.read_all(bootstrap, topic)
    assert [(key, value) for _, _, key, value in before][4] == (
        b"b",
        None,
    ), "a tombstone is a null value"

    deadline = time.monotonic() + 90
    while True:
        # The active segment is never cleaned: keep appending to one filler key so
        # segments roll.
        rawlog.produce(bootstrap, topic, [("~filler", "x")])
        records = [
            (key, value)
            for _, _, key, value in rawlog.read_all(bootstrap, topic)
            if key != b"~filler"
        ]
        if records == [(b"c", b"1"), (b"a", b"3")] or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert records == [
        (b"c", b"1"),
        (b"a", b"3"),
    ], "superseded values and tombstoned keys are gone from the log"
