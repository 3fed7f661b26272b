"""Idempotency keys on real instances: a write retried with the same Idempotency-Key
and body gets its first answer (status, body, ETag, position) and writes nothing,
through any instance and after its partition moved; the same key with another body is
422; a record the log rejected answers its retries 412."""

import json
from urllib.parse import urlsplit

import pytest
import requests

from kvstore import idempotency, log, positions
from kvstore.client import Client
from kvstore.partitioner import partition_for
from tests import rawlog
from tests.instances import isolated_settings
from tests.test_cluster import make_cluster, owner_of, wait_stable

PARTITIONS = 4


@pytest.fixture(scope="module")
def cluster(kafka_bootstrap, tmp_path_factory):
    settings = isolated_settings(kafka_bootstrap, partitions=PARTITIONS)
    nodes = make_cluster(settings, tmp_path_factory.mktemp("idem"), 2)
    yield nodes
    for node in nodes:
        node.stop()


def end_offsets(node, namespace):
    settings = node.settings
    with log.admin(settings) as admin:
        return admin.offsets(settings.topic(namespace), range(PARTITIONS))


def answer_of(response):
    """What a retry must get back exactly. (Location names the instance that answers,
    from its advertised URL: its path is the user's.)"""
    headers = {name: response.headers.get(name) for name in ("ETag", positions.HEADER)}
    location = urlsplit(response.headers.get("Location", "")).path
    return response.status_code, response.content, headers, location


def users_named(node, name):
    records = rawlog.read_all(
        list(node.settings.bootstrap_servers), node.settings.topic("users")
    )
    return {
        key
        for _, _, key, value in records
        if value is not None and json.loads(value).get("name") == name
    }


def test_a_retried_post_creates_one_user_and_answers_alike_anywhere(cluster):
    user = {"name": "Once", "email": "once@example.com"}
    headers = {"Idempotency-Key": "create-once"}
    first = requests.post(f"{cluster[0].url}/api/users/", json=user, headers=headers)
    assert first.status_code == 201, first.text
    assert (
        first.headers[positions.HEADER] and "Idempotent-Replayed" not in first.headers
    )
    before = end_offsets(cluster[0], "users")
    for node in cluster + cluster:  # either instance: the owner, or a 307 to it
        retry = requests.post(f"{node.url}/api/users/", json=user, headers=headers)
        assert answer_of(retry) == answer_of(first)
        assert retry.headers["Idempotent-Replayed"] == "true"
    assert end_offsets(cluster[0], "users") == before, "the retries wrote nothing"
    assert users_named(cluster[0], "Once") == {first.json()["id"].encode()}


def test_the_same_key_with_another_body_is_422_and_writes_nothing(cluster):
    headers = {"Idempotency-Key": "reused"}
    url = f"{cluster[1].url}/api/kv/reused"
    assert requests.put(url, json=1, headers=headers).status_code == 201
    before = end_offsets(cluster[0], "kv")
    again = requests.put(url, json=2, headers=headers)
    assert again.status_code == 422 and again.json()["code"] == "idempotency_key_reused"
    assert requests.delete(url, headers=headers).status_code == 422
    assert end_offsets(cluster[0], "kv") == before
    assert requests.get(url).json() == 1


def test_put_and_delete_retries_get_their_first_answers(cluster):
    client = Client(cluster[0].url)
    put_key = {"Idempotency-Key": "put-1"}
    first = client.put("kv", "idem-pd", {"v": 1}, headers=put_key)
    assert first.status_code == 201
    client.put("kv", "idem-pd", {"v": 2})  # another write meanwhile
    again = client.put("kv", "idem-pd", {"v": 1}, headers=put_key)
    assert answer_of(again) == answer_of(first), "the first answer, not the state now"
    assert client.get("kv", "idem-pd").json() == {"v": 2}, "and nothing written"
    delete_key = {"Idempotency-Key": "delete-1"}
    gone = client.delete("kv", "idem-pd", headers=delete_key)
    assert gone.status_code == 204
    assert answer_of(client.delete("kv", "idem-pd", headers=delete_key)) == answer_of(
        gone
    )
    assert client.delete("kv", "idem-pd").status_code == 404


def test_a_write_the_log_rejected_answers_its_retries_412(cluster):
    """A conditional record with an idempotency key, decided stale by the log (written
    here as a delayed producer would have), is the first answer: 412."""
    key, token, body = "idem-rejected", "late-write", {"late": True}
    client = Client(cluster[0].url)
    current = client.put("kv", key, "now").headers["ETag"].strip('"')
    idem = idempotency.Idempotent(
        idempotency.scoped(token), idempotency.fingerprint("PUT", body)
    )
    headers = [("kvstore-if", b"0-999999"), *idem.headers(idempotency.REPLACED)]
    settings = cluster[0].settings
    [(partition, offset)] = rawlog.produce(
        list(settings.bootstrap_servers),
        settings.topic("kv"),
        [(key, json.dumps(body))],
        partition=partition_for(key, PARTITIONS),
        headers=headers,
    )
    retry = client.put("kv", key, body, headers={"Idempotency-Key": token})
    assert retry.status_code == 412 and retry.json()["current_version"] == (
        f'"{current}"'
    )
    assert retry.headers[positions.HEADER] == f"kv:{partition}:{offset}"
    assert client.get("kv", key).json() == "now"


def test_a_malformed_key_is_400(cluster):
    for token in ("", "with space", "é", "x" * 256):
        answer = requests.put(
            f"{cluster[0].url}/api/kv/k", json=1, headers={"Idempotency-Key": token}
        )
        assert answer.status_code == 400, token
        assert answer.json()["code"] == "invalid_idempotency_key"


def test_a_retry_after_the_partition_moved_gets_the_first_answer(cluster):
    """The new owner restored the partition from Kafka: the first answer travelled in
    the record's headers. (Last in this module: it stops an instance.)"""
    user = {"name": "Moved", "email": "moved@example.com"}
    headers = {"Idempotency-Key": "before-the-move"}
    first = requests.post(f"{cluster[0].url}/api/users/", json=user, headers=headers)
    assert first.status_code == 201
    owner_url = owner_of(cluster[0], first.json()["id"], "users")
    owner = next(node for node in cluster if node.url == owner_url)
    survivor = next(node for node in cluster if node is not owner)
    owner.stop()
    wait_stable([survivor])
    assert owner_of(survivor, first.json()["id"], "users") == survivor.url
    retry = requests.post(f"{survivor.url}/api/users/", json=user, headers=headers)
    assert answer_of(retry) == answer_of(first)
    assert users_named(survivor, "Moved") == {first.json()["id"].encode()}
