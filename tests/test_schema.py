"""The API root, the OpenAPI 3 document and its docs pages, on a real instance with
KVSTORE_AUTH=required; and schemathesis against the live schema (a few hundred cases):
no server error, every answer as the document says, and no operation that takes a
request without a valid key."""

import json
import os
import re
import subprocess
import sys

import pytest

from kvstore import keys, log, topics
from tests.brokers import ROOT
from tests.instances import PYTHON, Instance, environment, isolated_settings

ADMIN, READ = keys.new_key(), keys.new_key()
SECRET = "s" * 40
SCHEMATHESIS = os.path.join(os.path.dirname(sys.executable), "st")
# Everything the issue asks of the document: no 5xx, and every status code, content
# type, header and body as documented; plus: no key, no answer.
CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,"
    "response_headers_conformance,response_schema_conformance,ignored_auth"
)


@pytest.fixture(scope="module")
def instance(kafka_bootstrap, tmp_path_factory):
    settings = isolated_settings(
        kafka_bootstrap,
        auth="required",
        api_keys=((keys.digest(ADMIN), "admin"), (keys.digest(READ), "read")),
        cluster_secret=SECRET,
        # Prefer: wait and the peers' waits are cut to this, so no generated case
        # waits longer than schemathesis's request timeout.
        max_wait=2,
    )
    with log.admin(settings) as admin:
        topics.ensure(admin, settings)
    node = Instance(
        settings,
        tmp_path_factory.mktemp("schema"),
        headers={"Authorization": f"Bearer {ADMIN}"},
    )
    yield node.start()
    node.stop()


@pytest.fixture(scope="module")
def document(instance):
    answer = instance.api("GET", "/api/schema/?format=json")
    assert answer.status_code == 200
    return answer.json()


def test_the_api_root_lists_namespaces_cluster_schema_and_docs(instance):
    assert instance.api("GET", "/api/", headers={}).status_code == 401
    root = instance.api("GET", "/api/", headers={"Authorization": f"Bearer {READ}"})
    assert root.status_code == 200
    assert root.json() == {
        "users": f"{instance.url}/api/users",
        "kv": f"{instance.url}/api/kv",
        "cluster": f"{instance.url}/api/cluster",
        "schema": f"{instance.url}/api/schema/",
        "docs": f"{instance.url}/api/docs/",
    }
    for url in root.json().values():
        assert instance.api("GET", url[len(instance.url) :]).status_code == 200


def test_the_document_describes_redirects_conditions_and_limits(document):
    assert document["openapi"].startswith("3.")
    item = document["paths"]["/api/kv/{key}/"]
    get, put, delete = item["get"], item["put"], item["delete"]
    assert set(get["responses"]) >= {"200", "304", "307", "400", "401", "403", "404"}
    assert set(put["responses"]) >= {"200", "201", "202", "307", "412", "413", "503"}
    assert set(delete["responses"]) >= {"204", "202", "307", "412", "503"}
    for operation in (get, put, delete):
        responses = operation["responses"]
        assert responses["307"]["headers"]["Location"]["required"]
        assert responses["503"]["headers"]["Retry-After"]["required"]
        assert responses["401"]["headers"]["WWW-Authenticate"]["required"]
    assert get["responses"]["200"]["headers"]["ETag"]["required"]
    assert get["responses"]["304"]["headers"]["ETag"]["required"]
    assert put["responses"]["202"]["headers"]["ETag"]["required"]
    params = {(p["in"], p["name"]): p for p in get["parameters"]}
    assert params[("query", "consistency")]["schema"]["enum"] == ["cache", "strong"]
    assert ("header", "If-None-Match") in params
    put_params = {(p["in"], p["name"]): p for p in put["parameters"]}
    assert ("header", "If-Match") in put_params
    assert put_params[("header", "If-None-Match")]["schema"]["enum"] == ["*"]
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearerAuth"]["scheme"] == "bearer"
    assert schemes["basicAuth"]["scheme"] == "basic"
    paths = set(document["paths"])
    assert {"/api/", "/api/cluster", "/api/users/", "/healthz", "/readyz"} <= paths
    assert "/api/internal/entries/{namespace}" in paths


def test_the_docs_page_serves_its_assets_locally(instance):
    page = instance.api("GET", "/api/docs/", headers={"Accept": "text/html"})
    assert page.status_code == 401, "the docs need a key too"
    page = instance.api("GET", "/api/docs/")
    assert page.status_code == 200 and "swagger-ui" in page.text
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert assets and all(url.startswith("/static/") for url in assets), assets
    for url in assets:
        answer = instance.api("GET", url, headers={})  # public, cached forever
        assert answer.status_code == 200, url
        assert "immutable" in answer.headers.get("Cache-Control", ""), url


def test_manage_py_spectacular_writes_a_valid_document(instance, tmp_path):
    out = tmp_path / "openapi.json"
    done = subprocess.run(
        [PYTHON, "manage.py", "spectacular", "--validate", "--fail-on-warn"]
        + ["--format", "openapi-json", "--file", str(out)],
        cwd=ROOT,
        env=environment(instance.settings),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "/api/kv/{key}/" in json.loads(out.read_text())["paths"]


def test_schemathesis_finds_no_server_error_and_no_undocumented_answer(
    instance, tmp_path
):
    user = instance.api(
        "POST", "/api/users/", json={"name": "Schema", "email": "s@example.com"}
    )
    assert user.status_code == 201
    # Random ids are all unknown users (404): one real id lets the user operations
    # reach their 200, 202 and 412 paths too.
    config = tmp_path / "schemathesis.toml"
    # A watch streams until its client goes away: schemathesis would wait for the
    # end of its body forever (tests/test_watch.py covers it).
    config.write_text(
        '[[operations]]\ninclude-tag = "users"\n'
        f'parameters = {{ key = "{user.json()["id"]}" }}\n'
        '[[operations]]\ninclude-path = "/api/{namespace}/watch/"\nenabled = false\n'
    )
    run = subprocess.run(
        [SCHEMATHESIS, "--config-file", str(config), "run"]
        + [f"{instance.url}/api/schema/", "--checks", CHECKS]
        + ["--header", f"Authorization: Bearer {ADMIN}"]
        + ["--phases", "coverage,fuzzing", "--max-examples", "3", "--seed", "8"]
        + ["--generation-database", "none", "--request-timeout", "30"]
        + ["--no-color", "--output-truncate", "false"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-20000:] + run.stderr
    cases = re.search(r"(\d+) generated, (\d+) passed", run.stdout)
    assert cases, run.stdout[-3000:]
    assert int(cases[1]) >= 200 and cases[1] == cases[2], cases[0]
