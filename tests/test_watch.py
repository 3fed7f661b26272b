"""Watches: the pure parts (what a record did as an event, whether history has holes,
a watch's bounded queue), then real instances and a real broker: a prefix watch opened
from a list's position receives exactly the puts and deletes made afterwards (counted
against the topic), across a disconnect, a member joining and leaving, a client that
reads too slowly; a resume that compaction made impossible is 410; bad input is 400,
too many watches 503."""

import collections
import concurrent.futures
import json
import threading
import time
import uuid

import pytest
import requests

from kvstore import conditions, conf, positions
from kvstore.client import Client, HistoryGone
from kvstore.clientwatch import parse
from kvstore.partitioner import partition_for
from kvstore.watch import events, history, stream
from kvstore.watch.hub import SLOW
from tests import rawlog
from tests.instances import Instance, isolated_settings, wait_for
from tests.test_cluster import make_cluster, owner_of, wait_stable
from tests.test_compaction import FAST_CLEANING

PARTITIONS = 4
R = collections.namedtuple("R", "partition offset key value timestamp headers")


class TestHistoryScan:
    """History is whole when the offsets follow one another from the start, or once a
    record is young enough that compaction cannot have touched what follows."""

    def verdict(self, start, end, records, young_after=float("inf")):
        scan = history.Scan(start, end, young_after)
        for offset, timestamp in records:
            scan.feed(offset, timestamp)
            if scan.done:
                break
        if not scan.done:
            scan.finish()
        return scan.whole, scan.oldest

    def test_following_offsets_are_whole(self):
        assert self.verdict(3, 6, [(3, 0), (4, 0), (5, 0)]) == (True, 2)
        assert self.verdict(6, 6, []) == (True, 5), "nothing to need"

    def test_a_hole_anywhere_is_history_gone_with_the_oldest_resumable(self):
        assert self.verdict(0, 9, [(2, 0), (3, 0), (8, 0)]) == (False, 7)
        assert self.verdict(0, 9, [(0, 0), (1, 0), (5, 0), (8, 0)]) == (False, 7)
        assert self.verdict(0, 4, [(0, 0), (1, 0)]) == (False, 3), "missing at end"

    def test_a_young_record_settles_what_follows(self):
        records = [(0, 10), (1, 10), (2, 500), (7, 600)]
        assert self.verdict(0, 9, records, young_after=100) == (True, -1)
        assert self.verdict(0, 9, [(4, 500)], young_after=100) == (False, 3)


class TestEvents:
    def test_records_become_puts_and_deletes_as_the_consumer_applies_them(self):
        key = next(f"k{i}" for i in range(99) if partition_for(f"k{i}", 2) == 0)
        stray = next(f"k{i}" for i in range(99) if partition_for(f"k{i}", 2) == 1)
        records = [
            R(0, 0, key.encode(), b'{"a":1}', 0, ()),
            R(0, 1, key.encode(), None, 0, ()),
            R(0, 2, key.encode(), b"not json", 0, ()),
            R(0, 3, stray.encode(), b"1", 0, ()),  # misplaced: another partition's
            R(0, 4, None, b"1", 0, ()),
            R(0, 5, key.encode(), b"2", 0, ()),
        ]
        found = events.events_of(records, 2, no_effect={5})
        assert [(e.offset, e.kind) for e in found] == [
            (0, "put"),
            (1, "delete"),
            (2, "delete"),
        ]
        frame = events.frame(found[0], "kv:0:0").decode()
        assert frame == (
            f'event: put\nid: kv:0:0\ndata: {{"key":"{key}","value":{{"a":1}},'
            f'"version":"0-0"}}\n\n'
        )
        assert events.decided_by_applier(
            R(0, 0, b"k", None, 0, (("kvstore-if", b"0-1"),))
        )
        assert not events.decided_by_applier(records[0])

    def test_records_that_do_not_follow_one_another_are_history_lost(self):
        at = [R(0, o, b"k", b"1", 0, ()) for o in (3, 4, 5, 7)]
        assert events.follow(3, at[:3]) and events.follow(9, [])
        assert not events.follow(3, at) and not events.follow(2, at[:1])

    def test_the_client_reads_events_and_id_only_messages(self):
        text = (
            b"retry: 10\n\n: hi\n\nevent: put\nid: kv:0:1\ndata: {}\n\nid: kv:0:5\n\n"
        )
        assert list(parse(text.split(b"\n"))) == [
            ("put", "{}", "kv:0:1"),
            (None, "", "kv:0:5"),
        ]

    def test_a_watch_that_falls_behind_its_buffer_is_cut_off(self):
        watch = stream.Watch("kv", {0: 0, 1: 0}, prefix="a", buffer=3)
        put = [events.Event(0, o, "put", "ab", "1") for o in range(5)]
        watch.offer(0, put[:2], 2)
        watch.offer(0, [events.Event(0, 2, "put", "zz", "1")], 3)  # not watched
        watch.offer(2, put, 5)  # a partition it does not watch
        assert watch.take(0) == (0, put[:2], 2) and watch.take(0) == (0, [], 3)
        assert watch.take(0) is None and not watch.ended
        watch.offer(0, put[2:], 5)
        watch.offer(1, [events.Event(1, 0, "put", "a", "1")], 1)
        assert watch.ended == SLOW

    def test_offers_without_events_take_one_place_per_partition(self):
        """Writes to keys a watch does not want fill no queue: a quiet prefix in a busy
        namespace is no slow reader."""
        watch = stream.Watch("kv", {0: 0, 1: 0}, prefix="a", buffer=4)
        for through in range(1, 50):
            unwanted = events.Event(through % 2, through, "put", "zz", "1")
            watch.offer(through % 2, [unwanted], through)
        put = events.Event(0, 50, "put", "ab", "1")
        watch.offer(0, [put], 51)
        watch.offer(0, [], 52)  # after an event: queued after it, not merged into it
        assert not watch.ended
        assert [watch.take(0) for _ in range(4)] == [
            (1, [], 49),
            (0, [], 48),
            (0, [put], 51),
            (0, [], 52),
        ]


class FakeReader:
    """A partition's records in memory, read as kvstore.log.PartitionReader reads:
    its position passes what the log no longer holds."""

    def __init__(self, records):
        self.records, self.at = records, {}

    def seek(self, partition, offset):
        self.at[partition] = offset

    def poll(self, timeout_ms):
        found = {}
        for partition, offset in self.at.items():
            batch = [r for r in self.records[partition] if r.offset >= offset][:2]
            if batch:
                found[partition] = batch
                self.at[partition] = batch[-1].offset + 1
        return found

    def position(self, partition):
        return self.at[partition]

    def pause(self, partition):
        pass

    def close(self):
        pass


class TestBacklog:
    """What a watch reads itself below the hub's tail: every record once, or an end
    when the log lost some of them."""

    @staticmethod
    def reading(monkeypatch, records):
        """The backlog reads `records` ({partition: [R]}) from memory."""
        monkeypatch.setattr(
            stream.log, "PartitionReader", lambda *a: FakeReader(records)
        )

    def run(self, monkeypatch, offsets, upto, overflowing=False):
        records = {0: [R(0, o, b"k", str(o).encode(), 0, ()) for o in offsets]}
        self.reading(monkeypatch, records)
        watch = stream.Watch("kv", {0: 10}, buffer=1)
        store = conf.StoreSettings()
        ids = []
        for frame in stream.backlog(store, watch, {0: upto}, 1, decisions=None):
            ids.append(frame.decode().split("\n")[1])
            if overflowing:  # the hub's live events, more than the queue holds
                watch.offer(0, [events.Event(0, upto, "put", "k", "1")] * 2, upto + 1)
        return watch, ids

    def test_every_record_below_the_tail_once(self, monkeypatch):
        watch, ids = self.run(monkeypatch, [10, 11, 12, 13, 14, 15], upto=14)
        assert ids == ["id: kv:0:10", "id: kv:0:11", "id: kv:0:12", "id: kv:0:13"]
        assert watch.next == {0: 14} and not watch.ended

    def test_records_gone_before_the_tail_end_the_watch(self, monkeypatch):
        watch, ids = self.run(monkeypatch, [10, 11, 12, 15], upto=15)
        assert watch.ended == "gone" and len(ids) == 3
        watch, ids = self.run(monkeypatch, [10, 12, 13], upto=14)
        assert watch.ended == "gone" and ids == []

    def test_a_queue_overflowing_meanwhile_cuts_the_watch_off_after_it(
        self, monkeypatch
    ):
        """Cut off at once, a backlog would start again from the same place on every
        resume while writes go on, and the watch would never get anywhere."""
        watch, ids = self.run(monkeypatch, [10, 11, 12, 13], 14, overflowing=True)
        assert len(ids) == 4 and watch.next == {0: 14} and watch.ended == SLOW
        watch, ids = self.run(monkeypatch, [10, 11, 13], 14, overflowing=True)
        assert watch.ended == "gone" and len(ids) == 2, "a hole still ends it"

    def test_a_slow_reader_is_told_how_far_it_got(self, monkeypatch):
        """Its last event may lie far behind records it did not want; resumed from
        there, it would read them all again."""
        unwanted = [R(0, o, b"zz", b"1", 0, ()) for o in range(10, 14)]
        self.reading(monkeypatch, {0: unwanted})
        watch = stream.Watch("kv", {0: 10}, prefix="a", buffer=1)
        wanted = [events.Event(0, o, "put", "a", "1") for o in (14, 15)]
        watch.offer(0, wanted, 16)  # the hub's, more than the queue holds
        backlog = stream.backlog(conf.StoreSettings(), watch, {0: 14}, 1, None)
        sent = b"".join(stream.frames(watch, backlog, keepalive=1)).decode()
        assert "event:" not in sent and watch.ended == SLOW
        assert "id: kv:0:13\n\n: this client reads too slowly" in sent


@pytest.fixture(scope="module")
def cluster(kafka_bootstrap, tmp_path_factory):
    settings = isolated_settings(
        kafka_bootstrap,
        partitions=PARTITIONS,
        max_watches=4,
        watch_keepalive=1,
        watch_buffer=5,
    )
    nodes = make_cluster(settings, tmp_path_factory.mktemp("watch"), 2)
    yield nodes
    for node in nodes:
        node.stop()


class SSE:
    """A raw watch stream: its status, headers and (type, data, id) events."""

    def __init__(self, url, **headers):
        self.response = requests.get(url, headers=headers, stream=True, timeout=30)
        self.status = self.response.status_code
        self.lines = self.response.iter_lines(delimiter=b"\n")
        self.messages = parse(self.lines)
        self.deadline = time.monotonic() + 60  # keep-alives would wait forever

    def next(self):
        assert time.monotonic() < self.deadline, "the events did not come"
        return next(self.messages)

    def close(self):
        self.response.close()


def opened(url, **headers):
    """An SSE that answered 200: streams closed by the tests before hold their slot
    until the instance's next write to them fails (a keep-alive, a second later)."""
    found = []

    def one():
        found[:] = [SSE(url, **headers)]
        return found[0].status == 200

    wait_for(one, 20, f"{url} to open", last=lambda: said(found))
    return found[0]


def said(streams):
    """The status of each stream, with the body of those that were refused."""
    return [
        (each.status, "" if each.status == 200 else each.response.text[:300])
        for each in streams
    ]


class Collector(threading.Thread):
    """Takes a client's watch events as they come, on a thread of its own."""

    def __init__(self, watch):
        super().__init__(daemon=True)
        self.watch, self.events = watch, []
        self.stopping = threading.Event()  # then one more event ends it
        self.start()

    def run(self):
        try:
            for event in self.watch:
                if self.stopping.is_set():
                    break
                data = {"key": event.key, "version": event.version}
                self.events.append((event.kind, data, event.position))
        finally:
            # Closing the generator closes its stream, so the instance frees its
            # slot now; left to the garbage collector, it held the slot for good.
            self.watch.close()


class Writers:
    """Threads putting and deleting their own keys through their own instance, with
    retries (Idempotency-Key: a retry never writes twice)."""

    def __init__(self, bases, prefix, count):
        self.bases, self.prefix, self.count = bases, prefix, count
        self.done = 0
        self.lock = threading.Lock()
        self.stopping = threading.Event()  # write on, past `count`, until set

    def run(self, writer):
        session, i = requests.Session(), -1
        while not self.stopping.is_set() or i < self.count:
            i += 1
            key = f"{self.prefix}{writer}.{i % 5}"
            if i % 4 == 3:
                self.send(session, writer, "DELETE", key, None)
            else:
                self.send(session, writer, "PUT", key, {"w": writer, "i": i})
            self.send(session, writer, "PUT", f"other.{writer}.{i % 3}", i)  # noise
        with self.lock:
            self.done += 1

    def send(self, session, writer, method, key, value):
        token = uuid.uuid4().hex
        for _ in range(100):
            base = self.bases[writer % len(self.bases)]
            try:
                answer = session.request(
                    method,
                    f"{base}/api/kv/{key}",
                    json=value,
                    timeout=30,
                    headers={"Idempotency-Key": token},
                )
            except requests.ConnectionError:  # an instance that is leaving
                time.sleep(0.2)
                continue
            # 202: in the log, not applied by its owner in time (a rebalance).
            if answer.status_code in (200, 201, 202, 204, 404):
                return
            assert answer.status_code in (503, 504), answer.text
            time.sleep(0.2)
        raise AssertionError(f"{method} {key} never answered")


def effective(node, prefix, after):
    """The records of the kv topic after `after` (a Vector) whose key starts with
    `prefix`, that took effect, judged from the topic alone: a repeat of an
    idempotent write did not, nor a conditional one whose version was gone."""
    records = rawlog.read_all(
        list(node.settings.bootstrap_servers), node.settings.topic("kv"), headers=True
    )
    seen, current, kept = set(), {}, []
    for partition, offset, key, value, headers in sorted(records):
        scope = headers.get("kvstore-idem-key")
        if (key, scope) in seen:
            continue
        seen.add((key, scope)) if scope is not None else None
        condition = conditions.based_on(headers.items())
        if condition is not None and not condition.holds(current.get(key)):
            continue
        current[key] = None if value is None else (partition, offset)
        if offset > after.get(partition, -1) and key.decode().startswith(prefix):
            kind = "delete" if value is None else "put"
            kept.append((partition, offset, kind, key.decode()))
    return kept


def test_a_prefix_watch_from_a_list_gets_exactly_what_was_written_afterwards(
    cluster, tmp_path
):
    """Several writers through several instances; the watch reads some events, is
    cut off, resumes with Last-Event-ID (through the client, from a third instance
    that joins and then leaves); every put and delete of the prefix in the topic after
    the list's position arrives once, in each partition's log order."""
    a, b = cluster
    client = Client(a.url)
    for i in range(5):
        client.put("kv", f"w.0.{i}", "before")
    _, listed = client.list("kv", prefix="w.")
    first = opened(f"{b.url}/api/kv/watch?prefix=w.&from_position={listed}")
    assert first.status == 200
    assert first.response.headers[positions.HEADER] == str(listed)
    writers = Writers([a.url, b.url], "w.", 30)
    pool = concurrent.futures.ThreadPoolExecutor(3)
    futures = [pool.submit(writers.run, w) for w in range(3)]
    received = []
    while len(received) < 25:
        kind, data, event_id = first.next()
        if kind in ("put", "delete"):
            received.append((kind, json.loads(data), event_id))
    first.close()  # a disconnect: the rest comes after Last-Event-ID

    third = Instance(a.settings, tmp_path / "third")
    third.start_consumer()
    third.start_web()
    # The rest through the client, whose first stream is the third instance's.
    resumed = Client(third.url, peers=[a.url, b.url], attempts=50)
    reader = Collector(resumed.watch("kv", prefix="w.", from_position=received[-1][2]))
    try:
        wait_stable([a, b, third])
        wait_for(lambda: len(reader.events) > 10, 30, "events through the third")
        third.stop()  # the watch's instance leaves: the client goes on elsewhere
        wait_stable([a, b])
        writers.stopping.set()
        for future in futures:
            future.result(timeout=120)
        expected = effective(a, "w.", listed)
        wait_for(
            lambda: len(received) + len(reader.events) >= len(expected),
            60,
            f"{len(expected)} events",
            last=lambda: len(received) + len(reader.events),
        )
        time.sleep(1)  # anything more would be one too many
        received += reader.events
    finally:
        writers.stopping.set()
        third.stop()
        pool.shutdown()
        reader.stopping.set()
        client.put("kv", "w.end", "the collector's last event")
        reader.join(30)
    got = [
        (*map(int, data["version"].split("-")), kind, data["key"])
        for kind, data, _ in received
    ]
    assert sorted(got) == expected, "exactly the topic's records, once each"
    for partition in range(PARTITIONS):
        offsets = [offset for p, offset, _, _ in got if p == partition]
        assert offsets == sorted(offsets), "each partition in log order"
    assert len(expected) > 100


def test_a_slow_reader_is_cut_off_and_resumes_exactly(cluster):
    """The instance buffers 5 events per watch: a client that stops reading is
    disconnected once the socket and that are full, and resumes from its last id."""
    a, _ = cluster
    start = Client(a.url).list("kv", prefix="slow.")[1]
    slow = opened(f"{a.url}/api/kv/watch?prefix=slow.&from_position={start}")
    assert slow.status == 200
    big = "x" * 200_000
    client = Client(a.url)
    for i in range(40):  # about 8 MB: more than the socket buffers hold
        client.put("kv", f"slow.{i % 4}", {"i": i, "pad": big})
    seen, last = [], None
    for kind, data, event_id in slow.messages:
        if kind == "put":
            seen.append(json.loads(data)["value"]["i"])
            last = event_id
    assert 0 < len(seen) < 40, "cut off before the end"
    rest = opened(f"{a.url}/api/kv/watch?prefix=slow.", **{"Last-Event-ID": last})
    while len(seen) < 40:
        kind, data, _ = rest.next()
        if kind == "put":
            seen.append(json.loads(data)["value"]["i"])
    rest.close()
    assert sorted(seen) == list(range(40)), "each once"
    for key in range(4):  # one partition each: in its log's order
        assert [i for i in seen if i % 4 == key] == list(range(key, 40, 4))


def test_a_key_watch_sees_only_its_key(cluster):
    a, b = cluster
    watch = opened(f"{b.url}/api/kv/watch?key=only-me")
    assert watch.status == 200
    client = Client(a.url)
    client.put("kv", "only-me-not", 1)
    client.put("kv", "only-me", 2)
    client.delete("kv", "only-me")
    seen = []
    while len(seen) < 2:
        kind, data, event_id = watch.next()
        if kind:
            seen.append((kind, json.loads(data).get("value")))
    watch.close()
    assert seen == [("put", 2), ("delete", None)]


def test_watch_refusals(cluster):
    a, _ = cluster
    for headers, query in [
        ({"Last-Event-ID": "kv:zz"}, ""),
        ({"Last-Event-ID": "users:0:1"}, ""),
        ({}, "?from_position=kv:99:1"),
        ({}, "?prefix=a%01"),
        ({}, "?key="),
        ({}, "?key=a&prefix=a"),
    ]:
        answer = a.api("GET", f"/api/kv/watch{query}", headers=headers)
        assert answer.status_code == 400, (headers, query, answer.text)
        assert answer.headers["Content-Type"] == "application/json"
    assert a.api("GET", "/api/nope/watch").status_code == 404
    for method in ("HEAD", "PUT", "DELETE"):  # "watch" is no key
        assert a.api(method, "/api/kv/watch").status_code == 405, method
    streams = []

    def four_open():
        # Streams the tests before closed hold their slot until the instance's next
        # write to them fails (a keep-alive a second later).
        for each in streams:
            each.close()
        streams[:] = [SSE(f"{a.url}/api/kv/watch") for _ in range(4)]
        return [s.status for s in streams] == [200] * 4

    wait_for(
        four_open, 45, "four watches to open", interval=0.5, last=lambda: said(streams)
    )
    refused = a.api("GET", "/api/kv/watch")
    assert refused.status_code == 503 and refused.json()["code"] == "too_many_watches"
    assert refused.headers["Retry-After"]
    key = next(f"lp{i}" for i in range(99) if owner_of(a, f"lp{i}") == a.url)
    etag = Client(a.url).put("kv", key, 1).headers["ETag"]
    poll = a.api(
        "GET", f"/api/kv/{key}", headers={"If-None-Match": etag, "Prefer": "wait=5"}
    )
    assert poll.status_code == 503, "a long-poll needs a slot too"
    assert poll.json()["code"] == "too_many_watches"
    streams.pop().close()
    wait_for(
        lambda: a.api("GET", "/api/kv/watch?key=x", stream=True).status_code == 200,
        10,
        "a slot to be free again",
    )
    for each in streams:
        each.close()


def test_a_resume_from_past_the_logs_end_is_410_and_says_so(cluster):
    """A position the log never reached (another store's, or one from before the
    topic was made again) cannot be resumed from; the 410 says why, and names a
    position to start from instead."""
    a, _ = cluster
    seen = []
    wait_for(  # the slots of streams closed before come free a second later
        lambda: seen.append(a.api("GET", "/api/kv/watch?from_position=kv:0:999999"))
        or seen[-1].status_code != 503,
        20,
        "a watch slot",
    )
    gone = seen[-1]
    assert gone.status_code == 410, gone.text
    body = gone.json()
    assert body["code"] == "history_compacted"
    assert "past the end of partition 0's log" in body["detail"]
    oldest = positions.parse(body["oldest_position"], "kv")
    assert oldest.get(0, -1) < 999999
    opened(f"{a.url}/api/kv/watch?from_position={oldest}").close()


def test_keep_alives_and_progress_while_idle(cluster):
    a, _ = cluster
    watch = opened(f"{a.url}/api/kv/watch?prefix=quiet.")
    Client(a.url).put("kv", "loud", 1)  # not watched: the id moves past it
    lines = [next(watch.lines) for _ in range(8)]
    watch.close()
    assert b": keep-alive" in lines or any(line.startswith(b"id: ") for line in lines)
    assert any(line.startswith(b"id: ") for line in lines), lines


@pytest.fixture
def compacted(kafka_bootstrap, tmp_path):
    """One instance over topics whose cleaner runs within seconds."""
    settings = isolated_settings(
        kafka_bootstrap, partitions=1, topic_configs=FAST_CLEANING
    )
    nodes = make_cluster(settings, tmp_path, 1)
    yield nodes[0]
    nodes[0].stop()


def test_a_resume_from_history_compaction_removed_is_410(compacted):
    node = compacted
    client = Client(node.url)
    start = client.list("kv")[1]
    for i in range(6):
        client.put("kv", "a", i)
    client.put("kv", "b", 1)
    client.delete("kv", "b")
    bootstrap = list(node.settings.bootstrap_servers)
    topic = node.settings.topic("kv")

    def compacted_away():
        client.put("kv", "~filler", time.time())  # segments roll only on appends
        offsets = [offset for _, offset, _, _ in rawlog.read_all(bootstrap, topic)]
        return offsets[:1] != [0]

    wait_for(compacted_away, 90, "the cleaner to compact the log", interval=1)
    gone = node.api(
        "GET", "/api/kv/watch", headers={"Last-Event-ID": str(start) + "0:0"}
    )
    assert gone.status_code == 410, gone.text
    body = gone.json()
    assert body["code"] == "history_compacted"
    oldest = positions.parse(body["oldest_position"], "kv")
    assert oldest.get(0) >= 0
    with pytest.raises(HistoryGone):
        next(client.watch("kv", from_position="kv:0:0"))
    # A fresh list's position opens the watch. (The oldest position named may be
    # gone already: with no compaction lag, the cleaner keeps removing the filler.)
    fresh = client.list("kv")[1]
    assert oldest.get(0) <= fresh.get(0)
    answer = node.api("GET", f"/api/kv/watch?from_position={fresh}", stream=True)
    assert answer.status_code == 200, answer.text
    answer.close()
