"""Several real instances in one group: ownership, 307 redirects over HTTP, lists across
the cluster, failover and membership changes. Real broker, real gunicorn, real consumer
processes."""

import concurrent.futures
import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import requests

from kvstore import log, topics
from kvstore.client import Client
from kvstore.partitioner import partition_for
from tests import rawlog
from tests.brokers import ROOT
from tests.instances import (
    Instance,
    comparable,
    environment,
    fast_answer,
    isolated_settings,
    wait_for,
)

PARTITIONS = 6


def make_cluster(settings, directory, count):
    with log.admin(settings) as admin:
        topics.ensure(admin, settings)
    nodes = [Instance(settings, directory / f"node{i}") for i in range(count)]
    try:
        for node in nodes:
            node.start_consumer()
            node.start_web()
        wait_stable(nodes)
    except BaseException:
        for node in nodes:  # a fixture that fails to start leaves nothing running
            node.stop()
        raise
    return nodes


def wait_stable(nodes, timeout=60):
    """Until every instance is ready and all agree on one generation and owner map."""
    urls = {node.url for node in nodes}

    seen = []

    def stable():
        views = []
        for node in nodes:
            try:
                answer = node.api("GET", "/readyz")
                views.append(
                    (answer.status_code, node.api("GET", "/api/cluster").json())
                )
            except requests.RequestException as exc:
                seen[:] = [f"{node.url}: {exc}"]
                return False
        seen[:] = [(code, v["generation"], v["owners"]) for code, v in views]
        owners = {tuple(sorted(v["owners"].items())) for _, v in views}
        return (
            all(code == 200 for code, _ in views)
            and len(owners) == 1
            and set(dict(next(iter(owners))).values()) == urls
        )

    def last():
        logs = [
            f"--- {node.url} consumer:\n{_tail(node.consumer_log)}" for node in nodes
        ]
        return "\n".join([str(seen)] + logs)

    wait_for(stable, timeout, "the cluster to be stable", interval=0.2, last=last)


def _tail(path, lines=15):
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def owner_of(node, key, namespace="kv"):
    described = node.api("GET", "/api/cluster").json()
    return described["owners"][
        str(partition_for(key, described["namespaces"][namespace]["partitions"]))
    ]


@pytest.fixture(scope="module")
def cluster(kafka_bootstrap, tmp_path_factory):
    settings = isolated_settings(kafka_bootstrap, partitions=PARTITIONS)
    nodes = make_cluster(settings, tmp_path_factory.mktemp("cluster"), 3)
    yield nodes
    for node in nodes:
        node.stop()


def by_url(nodes, url):
    return next(node for node in nodes if node.url == url)


class TestRouting:
    def test_every_key_is_reachable_through_every_instance(self, cluster):
        keys = [f"reach-{i}" for i in range(24)]
        for key in keys:
            assert (
                requests.put(
                    f"{cluster[0].url}/api/kv/{key}", json={"k": key}, timeout=10
                ).status_code
                == 201
            )
        owners = set()
        for key in keys:
            owner = owner_of(cluster[0], key)
            owners.add(owner)
            for node in cluster:
                direct = node.api("GET", f"/api/kv/{key}?x=1")
                if node.url == owner:
                    assert direct.status_code == 200 and direct.json() == {"k": key}
                    continue
                assert direct.status_code == 307, direct.text
                assert direct.headers["Location"].startswith(
                    f"{owner}/api/kv/{key}?x=1"
                )
                assert direct.headers["X-Kvstore-Owner"] == owner
                assert direct.headers["X-Kvstore-Partition"] == str(
                    partition_for(key, PARTITIONS)
                )
                assert direct.json()["code"] == "not_owner"
                followed = requests.get(f"{node.url}/api/kv/{key}", timeout=10)
                assert followed.status_code == 200 and followed.json() == {"k": key}
        assert owners == {
            node.url for node in cluster
        }, "the keys spread over all three instances"

    def test_the_fast_path_redirects_as_django_does(self, cluster):
        """A plain GET for another instance's key: the fast path's 307 is the
        middleware's, byte for byte but for its timing; the owner answers the
        redirected request (its `_hop`) on the fast path too."""
        key = "fast-307"
        owner = owner_of(cluster[0], key)
        assert requests.put(f"{owner}/api/kv/{key}", json=7, timeout=10).ok
        node = next(n for n in cluster if n.url != owner)
        plain = fast_answer(lambda: node.api("GET", f"/api/kv/{key}"))
        django = node.api("GET", f"/api/kv/{key}", headers={"Accept": "*/*;q=0.9"})

        assert not django.headers["Server-Timing"].endswith(", fast")
        assert comparable(plain) == comparable(django)
        assert plain.headers["Location"] == f"{owner}/api/kv/{key}?_hop=1"
        followed = fast_answer(
            lambda: requests.get(plain.headers["Location"], timeout=10)
        )
        assert followed.status_code == 200 and followed.json() == 7

    def test_writes_through_a_non_owner_keep_method_and_body(self, cluster):
        key = "via-non-owner"
        non_owner = next(n for n in cluster if n.url != owner_of(cluster[0], key))
        put = requests.put(f"{non_owner.url}/api/kv/{key}", json=[1, 2, 3], timeout=10)
        assert put.status_code == 201 and put.history[0].status_code == 307
        assert requests.get(f"{non_owner.url}/api/kv/{key}", timeout=10).json() == [
            1,
            2,
            3,
        ]
        etag = put.headers["ETag"]
        refused = requests.put(
            f"{non_owner.url}/api/kv/{key}",
            json=4,
            headers={"If-Match": '"0-0"'},
            timeout=10,
        )
        assert refused.status_code == 412, "headers survive the redirect"
        deleted = requests.delete(
            f"{non_owner.url}/api/kv/{key}", headers={"If-Match": etag}, timeout=10
        )
        assert deleted.status_code == 204 and deleted.history[0].status_code == 307
        assert (
            requests.get(f"{non_owner.url}/api/kv/{key}", timeout=10).status_code == 404
        )
        patch = requests.post(
            f"{non_owner.url}/api/users/",
            json={"name": "N", "email": "n@example.com"},
            timeout=10,
        )
        assert (
            patch.status_code == 201 and not patch.history
        ), "creating a user never needs a redirect"
        user = patch.json()["id"]
        for node in cluster:
            answer = requests.patch(
                f"{node.url}/api/users/{user}", json={"name": node.url}, timeout=10
            )
            assert answer.status_code == 200 and answer.json()["name"] == node.url

    def test_redirect_hops_are_bounded(self, cluster):
        key = "hops"
        non_owner = next(n for n in cluster if n.url != owner_of(cluster[0], key))
        answer = non_owner.api("GET", f"/api/kv/{key}?_hop=2")
        assert (
            answer.status_code == 503
            and answer.json()["code"] == "redirect_loop"
            and answer.headers["Retry-After"]
        )

    def test_a_peer_outside_the_allow_list_is_never_a_redirect_target(
        self, cluster, tmp_path
    ):
        # A second web front for node 0 (same cache, same consumer) that trusts no peer
        # URL.
        odd = Instance(
            dataclasses.replace(
                cluster[0].settings, peer_allowlist=("http://127.0.0.1:1",)
            ),
            tmp_path,
        )
        odd.settings = dataclasses.replace(
            odd.settings,
            cache_path=cluster[0].settings.cache_path,
            advertised_url=cluster[0].url,
        )
        odd.start_web()
        try:
            key = next(
                f"k{i}"
                for i in range(100)
                if owner_of(cluster[0], f"k{i}") != cluster[0].url
            )
            assert cluster[0].api("GET", f"/api/kv/{key}").status_code == 307
            answer = odd.api("GET", f"/api/kv/{key}")
            assert answer.status_code == 503 and "Location" not in answer.headers
            assert answer.json()["code"] == "owner_not_allowed"
            # ... and readiness says so, naming the partitions and the refused URLs.
            ready = odd.api("GET", "/readyz")
            refused = ready.json()["refused_owners"]
            assert ready.status_code == 503 and ready.json()["ready"] is False
            assert set(refused.values()) == {cluster[1].url, cluster[2].url}
            assert str(partition_for(key, PARTITIONS)) in refused
            described = odd.api("GET", "/api/cluster").json()
            assert described["refused_owners"] == refused
            status = subprocess.run(
                [sys.executable, "manage.py", "kvstore_status", "--url", odd.url]
                + ["--json"],
                cwd=ROOT,
                env=environment(odd.settings),
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert status.returncode == 1
            not_asked = {
                str(row["partition"])
                for row in json.loads(status.stdout)["partitions"]
                if "not on KVSTORE_PEER_ALLOWLIST" in (row["reason"] or "")
            }
            assert not_asked == set(refused)
        finally:
            odd.stop()


class TestCollections:
    def test_lists_gather_every_owner_with_stable_pages(self, cluster):
        keys = sorted(f"list-{i:03d}" for i in range(40))
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(
                pool.map(
                    lambda k: requests.put(
                        f"{cluster[1].url}/api/kv/{k}", json=k, timeout=10
                    ),
                    keys,
                )
            )
        for node in cluster:
            seen, url = [], f"{node.url}/api/kv/?limit=9&after=list-"
            while url:
                page = requests.get(url, timeout=10)
                assert page.status_code == 200, page.text
                seen += [
                    item["key"]
                    for item in page.json()["results"]
                    if item["key"].startswith("list-")
                ]
                url = page.json()["next"]
                if seen and not page.json()["results"][-1]["key"].startswith("list-"):
                    break
            assert seen == keys

    def test_users_list_spans_the_cluster(self, cluster):
        ids = {
            requests.post(
                f"{n.url}/api/users/",
                json={"name": n.url, "email": "x@example.com"},
                timeout=10,
            ).json()["id"]
            for n in cluster
            for _ in range(3)
        }
        listed = {
            u["id"]
            for u in requests.get(
                f"{cluster[2].url}/api/users/?limit=1000", timeout=10
            ).json()["results"]
        }
        assert ids <= listed


class TestSeeingTheCluster:
    def test_cluster_endpoint(self, cluster):
        described = cluster[0].api("GET", "/api/cluster").json()
        assert sorted(described["members"]) == sorted(n.url for n in cluster)
        assert described["generation"] > 0 and len(described["owners"]) == PARTITIONS
        assert described["namespaces"]["kv"]["partitions"] == PARTITIONS
        mine = [
            p for p, owner in described["owners"].items() if owner == cluster[0].url
        ]
        local = {
            (row["namespace"], str(row["partition"])) for row in described["local"]
        }
        assert local == {(ns, p) for ns in ("users", "kv") for p in mine}
        assert all(
            row["state"] == "ready" and row["lag"] in (0, None)
            for row in described["local"]
        )

    def test_kvstore_status_prints_the_table(self, cluster):
        env = environment(cluster[1].settings)
        done = subprocess.run(
            [sys.executable, "manage.py", "kvstore_status"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        members = [
            line for line in done.stdout.splitlines() if line.startswith("http://")
        ]
        assert sorted(line.split()[0] for line in members) == sorted(
            n.url for n in cluster
        )
        assert all("alive" in line and "held" in line for line in members)
        rows = [line.split() for line in done.stdout.splitlines()]
        ready = [row for row in rows if row and row[0].isdigit() and row[2] == "ready"]
        assert "lag" in done.stdout and len(ready) == PARTITIONS


class TestClient:
    def test_the_client_goes_straight_to_the_owner(self, cluster):
        client = Client(cluster[0].url)
        for i in range(12):
            assert client.put("kv", f"client-{i}", i).status_code in (200, 201)
            assert client.get("kv", f"client-{i}").json() == i
        assert client.hops == 0
        assert client.delete("kv", "client-0").status_code == 204

    def test_a_stale_map_follows_the_redirect(self, cluster):
        client = Client(cluster[0].url)
        client.refresh()
        key = "stale-map"
        wrong = next(n.url for n in cluster if n.url != owner_of(cluster[0], key))
        client.owners = {p: wrong for p in client.owners}  # every entry wrong
        assert client.put("kv", key, "v").status_code in (200, 201)
        assert client.hops == 1 and client.get("kv", key).json() == "v"


def test_failover_and_membership_changes(kafka_bootstrap, tmp_path):
    """Graceful stop, kill -9, and a member joining and leaving, under a client loop
    that must never see a false 404, a 5xx other than 503 with Retry-After, or lose an
    acknowledged write.
    """
    settings = isolated_settings(kafka_bootstrap, partitions=PARTITIONS)
    nodes = make_cluster(settings, tmp_path, 2)
    extra = None
    try:
        keys = [f"fo-{i}" for i in range(30)]
        for key in keys:
            assert (
                requests.put(
                    f"{nodes[0].url}/api/kv/{key}", json=0, timeout=10
                ).status_code
                == 201
            )
        loop = ClientLoop([n.url for n in nodes], keys)
        loop.start()
        time.sleep(1)

        extra = Instance(settings, tmp_path / "extra")  # a third instance joins...
        extra.start_consumer()
        extra.start_web()
        loop.bases.append(extra.url)
        wait_stable(nodes + [extra])
        time.sleep(1)
        assert extra.stop_consumer() == 0  # ... and leaves gracefully
        extra.stop()
        loop.bases.remove(extra.url)
        wait_stable(nodes)
        time.sleep(1)
        loop.stop()
        loop.check()
        assert loop.reads > 50 and loop.writes > 20
    finally:
        for node in nodes + ([extra] if extra else []):
            node.stop()
    records = rawlog.read_all(list(settings.bootstrap_servers), settings.topic("kv"))
    last = {}
    for _, _, key, value in sorted(records, key=lambda r: (r[0], r[1])):
        last[key.decode()] = int(value)
    for key, value in loop.acknowledged.items():
        assert (
            last[key] >= value
        ), f"acknowledged write {key}={value} is not in the topic"


class ClientLoop(threading.Thread):
    """Reads and writes existing keys through any instance, following redirects,
    recording anomalies."""

    def __init__(self, bases, keys):
        super().__init__(daemon=True)
        self.bases, self.keys = bases, keys
        self.stopping = threading.Event()
        self.anomalies, self.acknowledged = [], {}
        self.reads = self.writes = 0

    def run(self):
        session, n = requests.Session(), 0
        while not self.stopping.is_set():
            n += 1
            key, base = self.keys[n % len(self.keys)], self.bases[n % len(self.bases)]
            try:
                if n % 2:
                    answer = session.get(f"{base}/api/kv/{key}", timeout=10)
                    self.reads += 1
                else:
                    answer = session.put(f"{base}/api/kv/{key}", json=n, timeout=10)
                    if answer.status_code in (200, 201, 202):
                        self.acknowledged[key] = n
                        self.writes += 1
            except requests.ConnectionError:
                # An instance that is stopping refuses connections: not an answer.
                continue
            if answer.status_code == 404:
                self.anomalies.append(f"404 for existing {key} via {base}")
            elif answer.status_code >= 500 and not (
                answer.status_code == 503 and answer.headers.get("Retry-After")
            ):
                self.anomalies.append(
                    f"{answer.status_code} {answer.text[:100]} via {base}"
                )

    def stop(self):
        self.stopping.set()
        self.join(30)

    def check(self):
        assert self.anomalies == []


def failover_seconds(nodes, victim, keys, sig):
    """Stop `victim` with `sig`; seconds until every key answers 200 via the others."""
    survivors = [n for n in nodes if n is not victim]
    began = time.monotonic()
    if sig == signal.SIGKILL:
        victim.kill()
    else:
        victim.stop()

    def all_served():
        for i, key in enumerate(keys):
            try:
                if (
                    requests.get(
                        f"{survivors[i % len(survivors)].url}/api/kv/{key}", timeout=5
                    ).status_code
                    != 200
                ):
                    return False
            except requests.RequestException:
                return False
        return True

    wait_for(all_served, 60, "the survivors to serve every key", interval=0.05)
    return time.monotonic() - began


@pytest.mark.parametrize(
    "sig", [signal.SIGTERM, signal.SIGKILL], ids=["graceful", "kill-9"]
)
def test_failover(kafka_bootstrap, tmp_path, sig):
    settings = isolated_settings(kafka_bootstrap, partitions=PARTITIONS)
    nodes = make_cluster(settings, tmp_path, 3)
    try:
        keys = [f"k{i}" for i in range(30)]
        for key in keys:
            assert (
                requests.put(
                    f"{nodes[0].url}/api/kv/{key}", json=key, timeout=10
                ).status_code
                == 201
            )
        seconds = failover_seconds(nodes, nodes[1], keys, sig)
        limit = 3 if sig == signal.SIGTERM else settings.session_timeout_ms / 1000 + 5
        print(
            f"failover ({signal.Signals(sig).name}): every key served again after "
            f"{seconds:.2f}s"
        )
        assert seconds < limit
    finally:
        for node in nodes:
            node.stop()


class RedirectLoop(threading.Thread):
    """Reads keys through one instance, following each 307 by hand, and records every
    redirect and every connection refused at the owner a 307 named."""

    def __init__(self, base, keys):
        super().__init__(daemon=True)
        self.base, self.keys = base, keys
        self.stopping = threading.Event()
        self.redirects, self.refused = [], []

    def run(self):
        session, n = requests.Session(), 0
        while not self.stopping.is_set():
            n += 1
            key = self.keys[n % len(self.keys)]
            answer = session.get(
                f"{self.base}/api/kv/{key}", allow_redirects=False, timeout=10
            )
            if answer.status_code != 307:
                continue
            location = answer.headers["Location"]
            self.redirects.append((time.monotonic(), location))
            try:
                session.get(location, allow_redirects=False, timeout=10)
            except requests.ConnectionError:
                self.refused.append(location)


@pytest.mark.parametrize("victims", ["consumer-and-master", "every-process"])
def test_a_stop_signalled_to_every_process_at_once_still_drains(
    kafka_bootstrap, tmp_path, victims
):
    """SIGTERM to an instance's consumer and gunicorn at once (as supervisors and
    systemd stop a service): its web side keeps answering until its consumer has
    drained, so a peer's 307 never leads to a closed port."""
    settings = isolated_settings(kafka_bootstrap, partitions=PARTITIONS)
    nodes = make_cluster(settings, tmp_path, 2)
    stay, leave = nodes
    try:
        keys = [f"d{i}" for i in range(40)]
        keys = [k for k in keys if owner_of(stay, k) == leave.url]
        loops = [RedirectLoop(stay.url, keys) for _ in range(4)]
        for loop in loops:
            loop.start()
        time.sleep(0.5)
        pids = [leave.consumer.pid, leave.web.pid]
        if victims == "every-process":
            pids += [int(p) for p in _children(leave.web.pid)]
        signalled = time.monotonic()
        for pid in pids:
            os.kill(pid, signal.SIGTERM)
        assert leave.consumer.wait(30) == 0
        leave.web.wait(30)
        time.sleep(0.5)
        for loop in loops:
            loop.stopping.set()
            loop.join(30)
        after = [
            url for loop in loops for at, url in loop.redirects if at > signalled
        ]
        assert any(url.startswith(leave.url) for url in after), after[:5]
        assert [url for loop in loops for url in loop.refused] == []
    finally:
        for node in nodes:
            node.stop()


def test_instances_stopped_together_do_not_wait_for_each_other(
    kafka_bootstrap, tmp_path
):
    """Each waits in its draining stop for peers to learn the new owners; a peer that
    is stopping too never will, and must not hold the stop for the whole 10 s."""
    settings = isolated_settings(kafka_bootstrap, partitions=PARTITIONS)
    nodes = make_cluster(settings, tmp_path, 2)
    try:
        began = time.monotonic()
        for node in nodes:
            node.consumer.send_signal(signal.SIGTERM)
        assert [node.consumer.wait(30) for node in nodes] == [0, 0]
        assert time.monotonic() - began < 6
    finally:
        for node in nodes:
            node.stop()


def _children(pid):
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return found.stdout.split()


def test_a_list_with_an_unreachable_owner_is_503_naming_its_partitions(
    kafka_bootstrap, tmp_path
):
    settings = isolated_settings(kafka_bootstrap, partitions=PARTITIONS)
    nodes = make_cluster(settings, tmp_path, 2)
    try:
        victim = nodes[1]
        theirs = sorted(
            int(p)
            for p, owner in nodes[0].api("GET", "/api/cluster").json()["owners"].items()
            if owner == victim.url
        )
        # Its consumer still owns its partitions, but nobody can read them.
        victim.kill(consumer=False)
        answer = nodes[0].api("GET", "/api/kv/")
        assert (
            answer.status_code == 503
            and answer.json()["code"] == "partitions_unavailable"
        )
        assert str(theirs) in answer.json()["detail"] and answer.headers["Retry-After"]
    finally:
        for node in nodes:
            node.stop()
