"""The 307 to a key's owner keeps the key: every class of valid key (reserved and unsafe
characters, percent signs, dots, spaces, non-ASCII, the longest) is written, read and
deleted through the instance that does not own it, with curl, urllib3 and
python-requests following the redirect, and lands on exactly that key at the owner.
Two real instances, a real broker."""

import json
import subprocess
import uuid
from urllib.parse import quote

import pytest
import requests
import urllib3

from kvstore import log, topics
from kvstore.partitioner import partition_for
from tests import rawhttp
from tests.instances import Instance, isolated_settings, wait_for

PARTITIONS = 4

KEYS = [
    "plain",
    "dash-under_score.dot~tilde",
    "a?b",
    "a#b",
    "?",
    "#",
    "a[b]",
    "a@b",
    "a:b",
    "a!b",
    "a$b",
    "a&b=c",
    "a'b",
    "a(b)",
    "a*b",
    "a+b",
    "a,b",
    "a;b",
    "a=b",
    "a b",
    " lead",
    "trail ",
    "%41",
    "%",
    "100%",
    "%2F",
    "%25",
    "%zz",
    'a"b',
    "a<b>",
    "a\\b",
    "a^b",
    "a`b",
    "a{b}",
    "a|b",
    ".",
    "..",
    "...",
    ".hidden",
    "a..b",
    "é",
    "日本語",
    "emoji 😀",
    "🎉",
    "e\u0301",  # a combining accent
    "שלום",
    "a\u200db",  # zero-width joiner
    "\ufeffbom",
    "a\u00a0b",  # no-break space
    "\ufffd",
    "\ue000",  # private use
    "𝄞",
    "k" * 255,
    "€" * 85,  # 255 bytes
    "_hop",
]
DOT_SEGMENTS = {".", ".."}


def encoded(key):
    """The key as one path segment: every character percent-encoded but unreserved
    ones, and dots too when the key is a dot segment (clients remove those)."""
    if key in DOT_SEGMENTS:
        return "%2E" * len(key)
    return quote(key, safe="")


@pytest.fixture(scope="module")
def pair(kafka_bootstrap, tmp_path_factory):
    settings = isolated_settings(kafka_bootstrap, partitions=PARTITIONS)
    with log.admin(settings) as admin:
        topics.ensure(admin, settings)
    directory = tmp_path_factory.mktemp("redirects")
    nodes = [Instance(settings, directory / f"node{i}") for i in range(2)]
    try:  # stopped even when one fails to start
        for node in nodes:
            node.start_consumer()
            node.start_web()
        wait_for(
            lambda: _settled(nodes),
            60,
            "both instances to own partitions",
            interval=0.2,
        )
        yield nodes
    finally:
        for node in nodes:
            node.stop()


def _settled(nodes):
    try:
        views = [node.api("GET", "/api/cluster").json() for node in nodes]
        ready = all(node.api("GET", "/readyz").status_code == 200 for node in nodes)
    except (requests.RequestException, ValueError):
        return False
    owners = {json.dumps(view["owners"], sort_keys=True) for view in views}
    return (
        ready
        and len(owners) == 1
        and set(views[0]["owners"].values()) == {node.url for node in nodes}
    )


def route(pair, key):
    """(the instance that does not own `key`, the one that does)."""
    owners = pair[0].api("GET", "/api/cluster").json()["owners"]
    owner = owners[str(partition_for(key, PARTITIONS))]
    (other,) = [node for node in pair if node.url != owner]
    return other, next(node for node in pair if node.url == owner)


def stored(node, key):
    rows = node.cache(
        "SELECT value FROM entries WHERE namespace = 'kv' AND key = ?", (key,)
    )
    return json.loads(rows[0][0]) if rows else None


def kv_keys(node):
    return {
        key for (key,) in node.cache("SELECT key FROM entries WHERE namespace = 'kv'")
    }


class Curl:
    name = "curl"

    def __call__(self, method, url, body=None):
        command = ["curl", "-sS", "-g", "--location-trusted", "-X", method, url]
        command += ["-o", "-", "-w", "\n%{http_code} %{num_redirects}"]
        if body is not None:
            command += ["-H", "Content-Type: application/json", "--data-binary", body]
        done = subprocess.run(command, capture_output=True, timeout=30, check=True)
        text, _, tail = done.stdout.decode().rpartition("\n")
        status, redirects = tail.split()
        return int(status), int(redirects), text


class Urllib3:
    name = "urllib3"

    def __init__(self):
        self.pool = urllib3.PoolManager()

    def __call__(self, method, url, body=None):
        headers = {"Content-Type": "application/json"} if body is not None else {}
        answer = self.pool.request(
            method,
            url,
            body=body,
            headers=headers,
            retries=urllib3.Retry(total=None, connect=0, read=0, redirect=3),
            timeout=30,
        )
        redirects = len(answer.retries.history) if answer.retries else 0
        return answer.status, redirects, answer.data.decode()


class Requests:
    name = "python-requests"

    def __init__(self):
        self.session = requests.Session()
        self.session.trust_env = False

    def __call__(self, method, url, body=None):
        headers = {"Content-Type": "application/json"} if body is not None else {}
        answer = self.session.request(
            method, url, data=body, headers=headers, timeout=30
        )
        return answer.status_code, len(answer.history), answer.text


CLIENTS = [Curl(), Urllib3(), Requests()]


@pytest.mark.parametrize("client", CLIENTS, ids=lambda c: c.name)
def test_every_key_class_round_trips_through_a_307(pair, client):
    failures = []
    for key in KEYS:
        failure = _round_trip(pair, client, key)
        if failure:
            failures.append(failure)
    assert not failures, "\n".join(failures)


def _round_trip(pair, client, key):
    other, owner = route(pair, key)
    url = f"{other.url}/api/kv/{encoded(key)}"
    value = {"client": client.name, "key": key, "n": uuid.uuid4().hex}
    before = kv_keys(owner)
    status, hops, _ = client("PUT", url, json.dumps(value, ensure_ascii=False))
    if status not in (200, 201) or hops != 1:
        return f"{key!r}: PUT answered {status} after {hops} redirects"
    if stored(owner, key) != value:
        return f"{key!r}: the owner holds {stored(owner, key)!r} under it"
    if kv_keys(owner) - before - {key}:
        return f"{key!r}: wrote other keys {kv_keys(owner) - before - {key}!r}"
    status, hops, text = client("GET", url)
    if (status, hops) != (200, 1) or json.loads(text) != value:
        return f"{key!r}: GET answered {status} after {hops} redirects: {text[:80]}"
    status, hops, _ = client("DELETE", url)
    if (status, hops) != (204, 1) or stored(owner, key) is not None:
        return f"{key!r}: DELETE answered {status} after {hops} redirects"
    return None


@pytest.mark.parametrize("key", ["a?b", "%41", "emoji 😀", "a b", "_hop", "."])
def test_location_is_the_owner_and_the_path_as_sent(pair, key):
    other, owner = route(pair, key)
    for path in [f"/api/kv/{encoded(key)}", f"/api/kv/{encoded(key)}/"]:
        target = f"{path}?consistency=cache&_hop=0&x=%2F%3F"
        answer = rawhttp.send(other.port, rawhttp.request_bytes("GET", target))
        assert answer.status == 307
        assert answer.headers["location"] == (
            f"{owner.url}{path}?consistency=cache&x=%2F%3F&_hop=1"
        )
        assert answer.json()["code"] == "not_owner"


@pytest.mark.parametrize("hop", ["x", "%C2%B2", "-1", "", "1&_hop=0"])
def test_a_malformed_hop_count_is_400_through_a_non_owner(pair, hop):
    other, _ = route(pair, "hop-key")
    answer = other.api("GET", f"/api/kv/hop-key?_hop={hop}")
    assert answer.status_code == 400 and answer.json()["code"] == "parse_error"
