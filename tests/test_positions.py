"""Positions that travel: the vector grammar (pure), and through real instances:
answers carry the positions they reflect, a read with min_position waits for them
through any instance (the 307 keeps it) or answers 503 not_caught_up, the client sends
its own, prefix lists, and long-polls on one key."""

import concurrent.futures
import time

import pytest
import requests

from kvstore import positions
from kvstore.cache import prefix_end
from kvstore.client import Client
from kvstore.partitioner import partition_for
from tests.test_cluster import make_cluster, owner_of
from tests.instances import isolated_settings

PARTITIONS = 4


class TestVectors:
    def test_a_vector_round_trips_and_drops_partitions_with_nothing(self):
        vector = positions.parse("kv:3:17,0:41", "kv", 4)
        assert str(vector) == "kv:0:41,3:17" and vector.get(3) == 17
        assert vector.get(1) is None
        assert str(positions.Vector.of("kv", {0: -1, 2: 5})) == "kv:2:5"
        assert (
            str(positions.parse("kv:")) == "kv:" and not positions.parse("kv:").offsets
        )

    def test_merged_keeps_the_later_position_of_each_partition(self):
        one = positions.parse("kv:0:5,1:9")
        other = positions.parse("kv:1:3,2:7")
        assert str(one.merged(other)) == "kv:0:5,1:9,2:7"
        assert one.merged(None) is one

    @pytest.mark.parametrize(
        "text",
        [
            "",
            "kv",
            ":0:1",
            "kv:0",
            "kv:0:-1",
            "kv:a:1",
            "kv:0:1,0:2",
            "kv:0:1,",
            "kv:9:1",
            "users:0:1",
            "kv:0:" + "9" * 19,
            "kv:" + ",".join(f"{p}:1" for p in range(3000)),
        ],
    )
    def test_malformed_or_foreign_positions_are_refused(self, text):
        with pytest.raises(positions.PositionInvalid):
            positions.parse(text, "kv", 4)

    @pytest.mark.parametrize(
        "prefix, inside, outside",
        [
            ("ab", ["ab", "ab\x00", "abz", "ab\U0010ffff"], ["aa", "ac", "b", "a"]),
            ("a\U0010ffff", ["a\U0010ffff", "a\U0010ffffz"], ["b", "a\U0010fffe"]),
            ("\ud7ff", ["\ud7ffx"], ["\ue000"]),
        ],
    )
    def test_the_prefix_bound_holds_exactly_the_keys_with_the_prefix(
        self, prefix, inside, outside
    ):
        upper = prefix_end(prefix)
        assert all(prefix <= key < upper for key in inside)
        assert not any(prefix <= key < upper for key in outside)
        assert prefix_end("") is None and prefix_end("\U0010ffff") is None


@pytest.fixture(scope="module")
def cluster(kafka_bootstrap, tmp_path_factory):
    settings = isolated_settings(kafka_bootstrap, partitions=PARTITIONS, max_wait=5)
    nodes = make_cluster(settings, tmp_path_factory.mktemp("positions"), 2)
    yield nodes
    for node in nodes:
        node.stop()


def not_owner(cluster, key):
    return next(n for n in cluster if n.url != owner_of(cluster[0], key))


def test_read_your_writes_through_another_instance_with_the_position(cluster):
    """Write through the key's owner, read through the other instance (which answers
    307) with the write's position: always the new value."""
    keys = [f"ryw-{i}" for i in range(60)]
    session = requests.Session()

    def round_trip(key):
        owner = next(n for n in cluster if n.url == owner_of(cluster[0], key))
        other = not_owner(cluster, key)
        results = []
        for value in range(3):
            put = session.put(f"{owner.url}/api/kv/{key}", json=value, timeout=10)
            assert put.status_code in (200, 201), put.text
            written = put.headers[positions.HEADER]
            assert (
                written
                == f"kv:{partition_for(key, PARTITIONS)}:"
                + put.headers["ETag"].strip('"').split("-")[1]
            )
            read = session.get(
                f"{other.url}/api/kv/{key}",
                params={"min_position": written},
                timeout=10,
            )
            assert read.history and read.history[0].status_code == 307
            assert "min_position=" in read.history[0].headers["Location"]
            results.append((read.status_code, read.json(), read.headers["ETag"]))
            reflected = positions.parse(read.headers[positions.HEADER], "kv")
            assert reflected.offsets >= positions.parse(written, "kv").offsets
        return results

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        for key, results in zip(keys, pool.map(round_trip, keys)):
            assert [(code, value) for code, value, _ in results] == [
                (200, 0),
                (200, 1),
                (200, 2),
            ], key


def test_a_position_not_reached_in_time_is_503_not_caught_up(cluster):
    key = "far-ahead"
    owner = owner_of(cluster[0], key)
    requests.put(f"{owner}/api/kv/{key}", json=1, timeout=10)
    partition = partition_for(key, PARTITIONS)
    began = time.monotonic()
    answer = requests.get(
        f"{owner}/api/kv/{key}",
        headers={
            positions.MIN_HEADER: f"kv:{partition}:999999",
            "Prefer": "wait=1",
        },
        timeout=10,
    )
    assert answer.status_code == 503 and answer.json()["code"] == "not_caught_up"
    assert answer.headers["Retry-After"] and 0.9 < time.monotonic() - began < 4
    # A position of another partition does not hold this read up.
    other = (partition + 1) % PARTITIONS
    answer = requests.get(
        f"{owner}/api/kv/{key}",
        params={"min_position": f"kv:{other}:999999"},
        timeout=10,
    )
    assert answer.status_code == 200


@pytest.mark.parametrize(
    "where, value",
    [
        ("query", "kv:0"),
        ("query", "users:0:1"),
        ("query", f"kv:{PARTITIONS}:1"),
        ("header", "kv:0:x"),
        ("prefer", "wait=soon"),
    ],
)
def test_malformed_positions_and_waits_are_400(cluster, where, value):
    params, headers = {}, {}
    if where == "query":
        params["min_position"] = value
    elif where == "header":
        headers[positions.MIN_HEADER] = value
    else:
        headers["Prefer"] = value
    for node in cluster:  # the owner and the instance that would redirect
        answer = node.api("GET", "/api/kv/some-key", params=params, headers=headers)
        assert answer.status_code == 400, answer.text
        code = answer.json()["code"]
        assert code == ("invalid_prefer" if where == "prefer" else "invalid_position")


def test_prefix_lists_page_through_every_owner_with_their_positions(cluster):
    keys = sorted(f"pre.{i:02d}" for i in range(23))
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        puts = pool.map(lambda k: Client(cluster[0].url).put("kv", k, k), keys)
        assert {answer.status_code for answer in puts} == {201}
    requests.put(f"{cluster[0].url}/api/kv/pre", json="no slash", timeout=10)
    requests.put(f"{cluster[0].url}/api/kv/prf", json="other", timeout=10)
    seen, url = [], f"{cluster[1].url}/api/kv/?prefix=pre.&limit=5"
    while url:
        page = requests.get(url, timeout=10)
        assert page.status_code == 200
        body = page.json()
        assert body["position"] == page.headers[positions.HEADER]
        vector = positions.parse(body["position"], "kv", PARTITIONS)
        assert {p for p, _ in vector.offsets} == {
            partition_for(k, PARTITIONS) for k in keys
        }, "a position for every partition written"
        seen += [item["key"] for item in body["results"]]
        url = body["next"]
        assert url is None or "prefix=pre." in url
    assert seen == keys
    bad = requests.get(f"{cluster[0].url}/api/kv/?prefix=a%00b", timeout=10)
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_prefix"


def test_the_client_sends_its_positions_so_reads_never_go_back(cluster):
    writer, reader = Client(cluster[0].url), Client(cluster[1].url)
    for i in range(10):
        written = writer.put("kv", "client-pos", i)
        assert written.status_code in (200, 201)
        assert writer.positions["kv"].offsets, "the client remembers its position"
        # A fresh client that was handed the writer's positions reads the write.
        reader.positions = dict(writer.positions)
        assert reader.get("kv", "client-pos").json() == i
    far = f"kv:{partition_for('client-pos', PARTITIONS)}:999999"
    stubborn = Client(cluster[1].url, attempts=1, max_wait=0.1)
    stubborn.positions = {"kv": positions.parse(far)}
    with pytest.raises(Exception):
        stubborn.get("kv", "client-pos", headers={"Prefer": "wait=0"})


class TestLongPoll:
    def test_an_unchanged_entry_answers_304_after_the_wait(self, cluster):
        key = "poll-still"
        owner = owner_of(cluster[0], key)
        etag = requests.put(f"{owner}/api/kv/{key}", json=1, timeout=10).headers["ETag"]
        began = time.monotonic()
        answer = requests.get(
            f"{owner}/api/kv/{key}",
            headers={"If-None-Match": etag, "Prefer": "wait=1"},
            timeout=10,
        )
        assert answer.status_code == 304 and answer.headers["ETag"] == etag
        assert 0.9 < time.monotonic() - began < 3
        assert answer.headers[positions.HEADER]

    @pytest.mark.parametrize("change", ["put", "delete"])
    def test_a_change_answers_at_once_through_the_redirect(self, cluster, change):
        key = f"poll-{change}"
        owner = owner_of(cluster[0], key)
        etag = requests.put(f"{owner}/api/kv/{key}", json=1, timeout=10).headers["ETag"]
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            began = time.monotonic()
            polled = pool.submit(
                requests.get,
                f"{not_owner(cluster, key).url}/api/kv/{key}",
                headers={"If-None-Match": etag, "Prefer": "wait=20"},
                timeout=30,
            )
            time.sleep(1)
            if change == "put":
                requests.put(f"{owner}/api/kv/{key}", json=2, timeout=10)
            else:
                requests.delete(f"{owner}/api/kv/{key}", timeout=10)
            answer = polled.result()
        assert time.monotonic() - began < 5
        if change == "put":
            assert answer.status_code == 200 and answer.json() == 2
            assert answer.headers["ETag"] != etag
        else:
            assert answer.status_code == 404
