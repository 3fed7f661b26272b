"""The store over Kafka listeners with TLS and SASL that `bin/kafka-local --security`
started: SASL_SSL (SCRAM-SHA-512) and mutual TLS; and misconfigured clients stop within
seconds with a message naming the setting, never a hang or a traceback."""

import dataclasses
import json
import subprocess
import sys
import time

import pytest
from django.core.management import call_command

from tests.brokers import ROOT, LocalKafka
from tests.instances import Instance, environment, isolated_settings

pytestmark = pytest.mark.security

# Seconds a misconfigured command may take to give up: the check answers in well under
# one; the rest is Python and Django starting on a busy machine.
PROMPT = 20


@pytest.fixture(scope="module")
def sasl_ssl():
    with LocalKafka(security="sasl_ssl") as cluster:
        yield cluster


@pytest.fixture(scope="module")
def mutual_tls():
    with LocalKafka(security="ssl") as cluster:
        yield cluster


@pytest.fixture(scope="module")
def stranger(tmp_path_factory):
    """A CA nobody trusts and a client certificate it signed, as PEM files."""
    directory = tmp_path_factory.mktemp("stranger")

    def openssl(*args):
        subprocess.run(
            ["openssl", *args], cwd=directory, check=True, capture_output=True
        )

    openssl(
        *("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"),
        *("-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=stranger CA"),
    )
    openssl(
        *("req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=kvstore"),
        *("-keyout", "client.key", "-out", "client.csr"),
    )
    openssl(
        *("x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca.key"),
        *("-CAcreateserial", "-days", "2", "-out", "client.pem"),
    )
    return directory


def manage(settings, *args, timeout=120):
    """Run `manage.py ARGS` as a user would, configured only by the environment."""
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=environment(settings),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    done.seconds = time.monotonic() - began
    return done


def secure_settings(cluster, **security):
    settings = isolated_settings(cluster.bootstrap, security=cluster.security)
    if security:
        settings = dataclasses.replace(
            settings, security=dataclasses.replace(settings.security, **security)
        )
    return settings


@pytest.mark.parametrize("protocol", ["sasl_ssl", "mutual_tls"])
def test_the_store_works_over_a_secured_listener(
    protocol, request, tmp_path, settings, capsys
):
    cluster = request.getfixturevalue(protocol)
    settings.KVSTORE = secure_settings(cluster)
    assert (
        settings.KVSTORE.security.protocol
        == {
            "sasl_ssl": "SASL_SSL",
            "mutual_tls": "SSL",
        }[protocol]
    )
    # The commands run in this process (Django starts slowly on a busy machine); the
    # instance runs as processes, configured by the environment.
    call_command("kvstore_init")
    lines = [
        {"namespace": "kv", "key": f"bulk{i}", "value": {"n": i}} for i in range(50)
    ]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(line) + "\n" for line in lines))
    call_command("kvstore_import", str(source))
    assert "imported 50 records" in capsys.readouterr().out

    node = Instance(settings.KVSTORE, tmp_path / "node").start()
    try:
        put = node.api("PUT", "/api/kv/greeting", json={"hello": protocol})
        assert put.status_code == 201, put.text
        got = node.api("GET", "/api/kv/greeting")
        assert got.status_code == 200 and got.json() == {"hello": protocol}
        assert got.headers["ETag"] == put.headers["ETag"], "read-your-writes"
        assert node.api("GET", "/api/kv/bulk7").json() == {"n": 7}
        assert node.api("DELETE", "/api/kv/greeting").status_code == 204
        assert node.api("GET", "/api/kv/greeting").status_code == 404
    finally:
        node.stop()

    call_command("kvstore_export", output=str(tmp_path / "out"))
    rows = [json.loads(row) for row in (tmp_path / "out").read_text().splitlines()]
    assert rows == sorted(
        lines, key=lambda line: line["key"]
    ), "the deleted key is gone"


def assert_stops_clearly(done, *phrases):
    assert done.returncode != 0, done.stdout
    assert "Traceback" not in done.stderr, done.stderr
    for phrase in phrases:
        assert phrase in done.stderr, done.stderr
    assert done.seconds < PROMPT, f"took {done.seconds:.1f}s"


@pytest.mark.parametrize("command", ["kvstore_init", "kvstore_consume"])
def test_a_wrong_password_stops_the_commands_at_once(sasl_ssl, command, tmp_path):
    settings = dataclasses.replace(
        secure_settings(sasl_ssl, sasl_password="not-the-password"),
        cache_path=tmp_path / "cache.sqlite3",
    )
    assert_stops_clearly(
        manage(settings, command),
        "CommandError: KAFKA_SASL_PASSWORD: authentication failed for user 'kvstore'",
    )


@pytest.mark.parametrize("command", ["kvstore_init", "kvstore_consume"])
def test_an_untrusted_broker_certificate_stops_the_commands_at_once(
    sasl_ssl, stranger, command, tmp_path
):
    settings = dataclasses.replace(
        secure_settings(sasl_ssl, ssl_cafile=str(stranger / "ca.pem")),
        cache_path=tmp_path / "cache.sqlite3",
    )
    assert_stops_clearly(
        manage(settings, command),
        "CommandError: KAFKA_SSL_CAFILE: the certificate of the broker at",
        "is not trusted",
    )


def test_a_client_certificate_the_broker_does_not_trust_is_named(mutual_tls, stranger):
    settings = secure_settings(
        mutual_tls,
        ssl_certfile=str(stranger / "client.pem"),
        ssl_keyfile=str(stranger / "client.key"),
    )
    assert_stops_clearly(
        manage(settings, "kvstore_init"), "CommandError: KAFKA_SSL_CERTFILE: the broker"
    )


def test_a_missing_client_certificate_is_named(mutual_tls):
    settings = secure_settings(mutual_tls, ssl_certfile=None, ssl_keyfile=None)
    assert_stops_clearly(
        manage(settings, "kvstore_init"),
        "CommandError: KAFKA_SSL_CERTFILE: the broker at",
        "requires a client certificate",
    )


def test_the_web_side_answers_503_naming_the_setting(sasl_ssl, tmp_path):
    settings = secure_settings(sasl_ssl)
    assert manage(settings, "kvstore_init").returncode == 0
    node = Instance(settings, tmp_path / "node")
    node.start_consumer()
    # The web workers get a wrong password (rotated under them, say); the consumer,
    # already serving, keeps the right one.
    node.settings = dataclasses.replace(
        node.settings,
        security=dataclasses.replace(node.settings.security, sasl_password="stale"),
    )
    try:
        node.start_web()
        node.wait_ready()
        began = time.monotonic()
        refused = node.api("PUT", "/api/kv/k", json=1)
        assert time.monotonic() - began < PROMPT
        assert refused.status_code == 503, refused.text
        assert refused.json()["code"] == "store_unavailable"
        assert "KAFKA_SASL_PASSWORD" in refused.json()["detail"]
        assert refused.headers["Retry-After"]
    finally:
        node.stop()
