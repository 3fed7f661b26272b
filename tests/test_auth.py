"""API keys with roles, against two real instances with KVSTORE_AUTH=required: who may
read, write, see the cluster and call the internals; what a refused request costs
(nothing: the topics' end offsets do not move); the 307 carrying the key to the owner
(curl --location-trusted, kvstore.client) and never anywhere else; `check --deploy`."""

import base64
import http.server
import secrets
import subprocess
import threading

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command

from kvstore import checks, conf, keys, log, topics
from kvstore.client import Client, UntrustedRedirect
from kvstore.partitioner import partition_for
from tests.brokers import ROOT
from tests.instances import (
    PYTHON,
    Instance,
    environment,
    isolated_settings,
    writing_fast,
)
from tests.test_cluster import wait_stable

PARTITIONS = 4
KEYS = {role: keys.new_key() for role in keys.ROLES}
SECRET = secrets.token_urlsafe(32)


def bearer(key):
    return {"Authorization": f"Bearer {key}"}


def basic(password, user="anyone"):
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@pytest.fixture(scope="module")
def cluster(kafka_bootstrap, tmp_path_factory):
    settings = isolated_settings(
        kafka_bootstrap,
        partitions=PARTITIONS,
        auth="required",
        api_keys=tuple((keys.digest(key), role) for role, key in KEYS.items()),
        cluster_secret=SECRET,
    )
    with log.admin(settings) as admin:
        topics.ensure(admin, settings)
    directory = tmp_path_factory.mktemp("auth")
    nodes = [
        Instance(settings, directory / f"node{i}", headers=bearer(KEYS["admin"]))
        for i in range(2)
    ]
    for node in nodes:
        node.start_consumer()
        node.start_web()
    wait_stable(nodes)
    yield nodes
    for node in nodes:
        node.stop()


def owner_and_other(nodes, key):
    owners = nodes[0].api("GET", "/api/cluster").json()["owners"]
    owner = owners[str(partition_for(key, PARTITIONS))]
    return (
        next(n for n in nodes if n.url == owner),
        next(n for n in nodes if n.url != owner),
    )


def end_offsets(node):
    settings = node.settings
    with log.admin(settings) as admin:
        return {
            ns: admin.offsets(settings.topic(ns), range(PARTITIONS))
            for ns in settings.namespaces
        }


def refused_writes(node, key, headers):
    """Every kind of write, to `node`, with `headers`: the answers."""
    return [
        node.api("PUT", f"/api/kv/{key}", json={"x": 1}, headers=headers),
        node.api("DELETE", f"/api/kv/{key}", headers=headers),
        node.api(
            "POST", "/api/users/", json={"name": "A", "email": "a@b.c"}, headers=headers
        ),
    ]


class TestRefusals:
    def test_no_key_or_a_bad_key_is_401_with_a_challenge_and_writes_nothing(
        self, cluster
    ):
        key = "guarded"
        owner, other = owner_and_other(cluster, key)
        assert owner.api("PUT", f"/api/kv/{key}", json=0).status_code == 201
        for node in cluster:  # refused below Django too (kvstore.api.fast)
            writing_fast(node)
        before = end_offsets(owner)
        attempts = [
            ("not_authenticated", {}),
            ("authentication_failed", bearer("kvs_not-a-key")),
            ("authentication_failed", basic("kvs_not-a-key")),
            ("authentication_failed", {"Authorization": "Basic !!not-base64"}),
        ]
        for code, headers in attempts:
            for node in (owner, other):  # the non-owner refuses instead of redirecting
                for answer in refused_writes(node, key, headers) + [
                    node.api("GET", f"/api/kv/{key}", headers=headers)
                ]:
                    assert answer.status_code == 401, (node.url, answer.text)
                    assert answer.json()["code"] == code
                    assert (
                        answer.headers["WWW-Authenticate"] == 'Bearer realm="kvstore"'
                    )
                    assert "Location" not in answer.headers
                    assert "X-Kvstore-Owner" not in answer.headers
        assert end_offsets(owner) == before

    def test_a_read_key_reads_but_may_not_write(self, cluster):
        key = "read-only"
        owner, other = owner_and_other(cluster, key)
        assert owner.api("PUT", f"/api/kv/{key}", json="v").status_code == 201
        for node in cluster:
            writing_fast(node)
        before = end_offsets(owner)
        for node in (owner, other):
            for answer in refused_writes(node, key, bearer(KEYS["read"])):
                assert answer.status_code == 403, (node.url, answer.text)
                assert answer.json() == {
                    "code": "permission_denied",
                    "detail": "A read key may not do this.",
                }
        assert end_offsets(owner) == before
        got = owner.api("GET", f"/api/kv/{key}", headers=bearer(KEYS["read"]))
        assert got.status_code == 200 and got.json() == "v"
        redirected = other.api("GET", f"/api/kv/{key}", headers=bearer(KEYS["read"]))
        assert redirected.status_code == 307
        assert redirected.headers["Location"].startswith(f"{owner.url}/api/kv/{key}")

    def test_only_admin_keys_see_the_cluster(self, cluster):
        node = cluster[0]
        assert node.api("GET", "/api/cluster", headers={}).status_code == 401
        for role in ("read", "write"):
            answer = node.api("GET", "/api/cluster", headers=bearer(KEYS[role]))
            assert answer.status_code == 403
            assert answer.json()["code"] == "permission_denied"
        described = node.api("GET", "/api/cluster", headers=bearer(KEYS["admin"]))
        assert described.status_code == 200
        assert set(described.json()["members"]) == {n.url for n in cluster}

    def test_probes_need_no_key(self, cluster):
        for path in ("/healthz", "/readyz"):
            assert cluster[0].api("GET", path, headers={}).status_code == 200


class TestPeers:
    def test_the_internals_take_the_cluster_secret_or_an_admin_key(self, cluster):
        node = cluster[0]
        path = "/api/internal/entries/kv?partitions=0"
        assert node.api("GET", path, headers={}).status_code == 401
        for role in ("read", "write"):
            assert node.api("GET", path, headers=bearer(KEYS[role])).status_code == 403
        assert node.api("GET", path, headers=bearer(SECRET)).status_code in (200, 503)
        assert node.api("GET", path, headers=bearer(KEYS["admin"])).status_code in (
            200,
            503,
        )
        # The secret is no key for the public API.
        assert node.api("GET", "/api/kv/x", headers=bearer(SECRET)).status_code == 403

    def test_lists_gather_from_peers_with_the_secret(self, cluster):
        written = {f"list-{i}" for i in range(12)}
        for key in written:
            owner, _ = owner_and_other(cluster, key)
            assert owner.api("PUT", f"/api/kv/{key}", json=key).status_code in (
                200,
                201,
            )
        holders = {owner_and_other(cluster, key)[0].url for key in written}
        assert len(holders) == 2, "the keys live on both instances"
        for node in cluster:
            listed = node.api(
                "GET", "/api/kv/?limit=1000", headers=bearer(KEYS["read"])
            )
            assert listed.status_code == 200, listed.text
            assert written <= {row["key"] for row in listed.json()["results"]}


class TestRedirectsCarryTheKey:
    def test_curl_location_trusted_writes_through_a_non_owner(self, cluster):
        key = "via-curl"
        owner, other = owner_and_other(cluster, key)
        before = end_offsets(owner)
        out = subprocess.run(
            [
                "curl", "-s", "--location-trusted", "-X", "PUT",
                "-H", f"Authorization: Bearer {KEYS['write']}",
                "-H", "Content-Type: application/json",
                "-d", '{"via": "curl"}',
                "-w", "\n%{http_code} %{num_redirects}",
                f"{other.url}/api/kv/{key}",
            ],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout  # fmt: skip
        body, status = out.rsplit("\n", 1)
        assert status == "201 1" and body == '{"via":"curl"}'
        assert sum(end_offsets(owner)["kv"].values()) == sum(before["kv"].values()) + 1

    def test_the_client_sends_its_key_to_the_owner(self, cluster):
        key = "via-client"
        owner, other = owner_and_other(cluster, key)
        client = Client(other.url, api_key=KEYS["write"], peers=[owner.url])
        assert client.put("kv", key, [1, 2]).status_code == 201
        assert client.map_denied, "a write key may not read the cluster map"
        assert client.hops == 1, "so it followed the 307, with the key"
        assert client.get("kv", key).json() == [1, 2]
        admin = Client(other.url, api_key=KEYS["admin"])
        assert admin.get("kv", key).json() == [1, 2]
        assert admin.hops == 0, "an admin key reads the map and goes straight there"

    def test_the_client_never_sends_the_key_to_a_host_it_does_not_know(self):
        seen = []

        class Stranger(http.server.BaseHTTPRequestHandler):
            def do_PUT(self):
                seen.append(self.headers.get("Authorization"))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        stranger = http.server.HTTPServer(("127.0.0.1", 0), Stranger)
        target = f"http://127.0.0.1:{stranger.server_port}"

        class Redirector(http.server.BaseHTTPRequestHandler):
            def do_PUT(self):
                self.send_response(307)
                self.send_header("Location", target + self.path)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self):  # the cluster map, readable
                body = b'{"owners": {}, "namespaces": {"kv": {"partitions": 1}}, '
                body += b'"members": []}'
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        redirector = http.server.HTTPServer(("127.0.0.1", 0), Redirector)
        for server in (stranger, redirector):
            threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            client = Client(
                f"http://127.0.0.1:{redirector.server_port}", api_key="kvs_secret"
            )
            with pytest.raises(UntrustedRedirect):
                client.put("kv", "k", 1)
            trusting = Client(
                f"http://127.0.0.1:{redirector.server_port}",
                api_key="kvs_secret",
                peers=[target],
            )
            assert trusting.put("kv", "k", 1).status_code == 200
        finally:
            for server in (stranger, redirector):
                server.shutdown()
        assert seen == ["Bearer kvs_secret"], "only the trusting client reached it"


class TestBrowsers:
    def test_the_page_asks_for_basic_auth_and_takes_the_key_as_password(self, cluster):
        node = cluster[0]
        html = {"Accept": "text/html"}
        refused = node.api("GET", "/api/kv/", headers=html)
        assert refused.status_code == 401
        assert refused.headers["WWW-Authenticate"].startswith('Basic realm="kvstore"')
        page = node.api("GET", "/api/kv/", headers={**html, **basic(KEYS["read"])})
        assert page.status_code == 200
        assert page.headers["Content-Type"].startswith("text/html")
        assert "Key Value List" in page.text


class TestOperatorViews:
    """/metrics, /cluster/ and /api/cluster/status are admin-only; kvstore_status
    presents KVSTORE_ADMIN_KEY."""

    PATHS = ("/metrics", "/cluster/", "/api/cluster/status")

    def test_no_key_is_401_and_read_or_write_keys_are_403(self, cluster):
        node = cluster[0]
        for path in self.PATHS:
            missing = node.api("GET", path, headers={})
            assert missing.status_code == 401, path
            assert missing.json()["code"] == "not_authenticated"
            assert missing.headers["WWW-Authenticate"] == 'Bearer realm="kvstore"'
            assert "kvstore_" not in missing.text
            for role in ("read", "write"):
                refused = node.api("GET", path, headers=bearer(KEYS[role]))
                assert refused.status_code == 403, (path, role)
                assert refused.json()["code"] == "permission_denied"
        page = node.api("GET", "/cluster/", headers={"Accept": "text/html"})
        assert page.headers["WWW-Authenticate"].startswith('Basic realm="kvstore"')

    def test_an_admin_key_gets_them(self, cluster):
        node = cluster[0]
        scraped = node.api("GET", "/metrics", headers=bearer(KEYS["admin"]))
        assert scraped.status_code == 200 and "kvstore_requests_total" in scraped.text
        page = node.api("GET", "/cluster/", headers=basic(KEYS["admin"]))
        assert page.status_code == 200 and 'id="cluster"' in page.text
        posted = node.api("POST", "/metrics", headers=bearer(KEYS["admin"]))
        assert posted.status_code == 405

    def test_the_status_asks_the_peers_with_the_cluster_secret(self, cluster):
        found = cluster[1].api("GET", "/api/cluster/status").json()
        assert {m["url"] for m in found["members"]} == {n.url for n in cluster}
        assert all(m["answered"] for m in found["members"]), found["members"]
        assert found["unready"] == []

    def test_kvstore_status_presents_the_admin_key(self, cluster):
        settings = cluster[0].settings

        def status(**env):
            return subprocess.run(
                [PYTHON, "manage.py", "kvstore_status"],
                cwd=ROOT,
                env=environment(settings, **env),
                capture_output=True,
                text=True,
                timeout=60,
            )

        refused = status()
        assert refused.returncode == 1
        assert refused.stdout.count("(answered 401)") == 2, refused.stdout
        done = status(KVSTORE_ADMIN_KEY=KEYS["admin"])
        assert done.returncode == 0, done.stdout + done.stderr
        assert all(node.url in done.stdout for node in cluster)
        through = status(KVSTORE_ADMIN_KEY=KEYS["read"])
        assert through.returncode == 1 and "answered 403" in through.stdout


def test_check_deploy_passes_with_auth_required(cluster):
    settings = cluster[0].settings
    production = environment(
        settings,
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        DJANGO_SECURE_SSL_REDIRECT="1",
        DJANGO_SECURE_HSTS_SECONDS="31536000",
        DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS="1",
        DJANGO_SECURE_HSTS_PRELOAD="1",
        DJANGO_SECURE_COOKIES="1",
    )
    command = [PYTHON, "manage.py", "check", "--deploy", "--fail-level", "WARNING"]
    passed = subprocess.run(
        command, cwd=ROOT, env=production, capture_output=True, text=True, timeout=120
    )
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "no issues" in passed.stdout


def test_the_deploy_check_warns_while_auth_is_off_and_fails_without_keys(
    with_settings,
):
    with_settings(auth="off")
    assert [issue.id for issue in checks.check_auth()] == ["kvstore.W003"]
    with_settings(auth="required", cluster_secret=SECRET, api_keys=())
    assert [issue.id for issue in checks.check_auth()] == ["kvstore.E004"]
    with_settings(api_keys=((keys.digest(KEYS["read"]), "read"),))
    assert checks.check_auth() == []


class TestKeyConfiguration:
    def test_kvstore_key_create_prints_a_key_and_the_line_that_configures_it(
        self, tmp_path, capsys
    ):
        path = tmp_path / "keys"
        call_command("kvstore_key", "create", "--role", "write", "--append", str(path))
        key, line = capsys.readouterr().out.split()
        assert key.startswith("kvs_") and line == f"write:{keys.digest(key)}"
        assert key not in path.read_text() and path.read_text() == line + "\n"
        assert oct(path.stat().st_mode & 0o777) == "0o600"
        path.write_text(f"# ops team\n\n{path.read_text()}read:{'a' * 64}\n")
        settings = conf.from_environ({"KVSTORE_API_KEYS_FILE": str(path)})
        assert settings.api_keys == ((keys.digest(key), "write"), ("a" * 64, "read"))
        assert keys.match(key, settings.api_keys) == "write"
        assert keys.match(key + "x", settings.api_keys) is None

    @pytest.mark.parametrize(
        "environ, message",
        [
            ({"KVSTORE_AUTH": "on"}, "KVSTORE_AUTH must be one of off, required"),
            ({"KVSTORE_AUTH": "required"}, "needs KVSTORE_CLUSTER_SECRET"),
            ({"KVSTORE_CLUSTER_SECRET": "short"}, "at least 32 characters"),
            ({"KVSTORE_API_KEYS": "owner:" + "a" * 64}, "KVSTORE_API_KEYS"),
            ({"KVSTORE_API_KEYS": "read:abc"}, "64 hex digits"),
            ({"KVSTORE_API_KEYS_FILE": "/nonexistent/keys"}, "KVSTORE_API_KEYS_FILE"),
        ],
    )
    def test_malformed_auth_settings_name_the_variable(self, environ, message):
        with pytest.raises(ImproperlyConfigured, match=message):
            conf.from_environ(environ)

    def test_a_bad_line_in_the_key_file_names_its_number(self, tmp_path):
        path = tmp_path / "keys"
        path.write_text(f"read:{'b' * 64}\nwrite {'c' * 64}\n")
        with pytest.raises(ImproperlyConfigured, match=r"keys line 2"):
            conf.from_environ({"KVSTORE_API_KEYS_FILE": str(path)})
