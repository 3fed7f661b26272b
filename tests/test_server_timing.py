"""`Server-Timing` on every answer of a real instance: where a GET, a PUT, a 307 and
an error spent their time (route, cache, produce, apply_wait, total)."""

import re
import time

import pytest

from kvstore import timing
from tests.instances import writing_fast
from tests.test_cluster import owner_of

ENTRY = re.compile(r"^([a-z_]+);dur=([0-9]+\.[0-9]{2})$")


def phases(answer):
    """{name: milliseconds} of an answer's Server-Timing header (but for the "fast" the
    fast path's answers end in, kvstore.api.fast)."""
    parsed = {}
    header = answer.headers["Server-Timing"].removesuffix(", fast")
    for part in header.split(", "):
        match = ENTRY.match(part)
        assert match, answer.headers["Server-Timing"]
        parsed[match[1]] = float(match[2])
    return parsed


@pytest.fixture(scope="module")
def owner_and_other(two_instances):
    key = "timed"
    owner = next(n for n in two_instances if n.url == owner_of(two_instances[0], key))
    other = next(n for n in two_instances if n is not owner)
    return key, owner, other


@pytest.mark.parametrize("fast", [False, True])
def test_a_put_shows_route_cache_produce_and_apply_wait(owner_and_other, fast):
    key, owner, _ = owner_and_other
    if fast:
        writing_fast(owner)
    # An Idempotency-Key keeps a PUT on Django's path.
    headers = {} if fast else {"Idempotency-Key": f"timed-{time.time()}"}
    answer = owner.api("PUT", f"/api/kv/{key}", json={"t": 1}, headers=headers)
    assert answer.status_code in (200, 201)
    assert answer.headers["Server-Timing"].endswith(", fast") is fast
    timed = phases(answer)
    assert list(timed) == ["route", "cache", "produce", "apply_wait", "total"]
    assert timed["produce"] > 0
    assert timed["total"] >= timed["produce"] + timed["apply_wait"]


def test_a_get_shows_route_and_the_cache_read(owner_and_other):
    key, owner, _ = owner_and_other
    owner.api("PUT", f"/api/kv/{key}", json=2)
    answer = owner.api("GET", f"/api/kv/{key}")
    assert answer.status_code == 200
    assert list(phases(answer)) == ["route", "cache", "total"]


def test_a_307_shows_the_routing_it_took(owner_and_other):
    key, _, other = owner_and_other
    answer = other.api("GET", f"/api/kv/{key}")
    assert answer.status_code == 307
    assert list(phases(answer)) == ["route", "total"]


def test_errors_carry_it_too(two_instances, owner_and_other):
    _, owner, _ = owner_and_other
    key = next(
        f"never-written-{i}"
        for i in range(100)
        if owner_of(two_instances[0], f"never-written-{i}") == owner.url
    )
    missing = owner.api("GET", f"/api/kv/{key}")
    assert missing.status_code == 404
    assert list(phases(missing)) == ["route", "cache", "total"]
    refused = owner.api(
        "PUT", "/api/kv/x", data=b"{no", headers={"Content-Type": "application/json"}
    )
    assert refused.status_code == 400 and "total" in phases(refused)
    nowhere = owner.api("GET", "/no/such/url")
    assert nowhere.status_code == 404 and list(phases(nowhere)) == ["total"]


def test_the_header_lists_the_phases_in_order_in_milliseconds():
    phases = {"produce": 0.0123, "route": 0.0001, "apply_wait": 0.002}
    assert timing.header(phases, 0.02) == (
        "route;dur=0.10, produce;dur=12.30, apply_wait;dur=2.00, total;dur=20.00"
    )
