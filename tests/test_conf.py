"""Settings come from the environment, with defaults, and fail clearly on malformed
values."""

from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from kvstore import routing
from kvstore.conf import default_hosts, from_environ


def test_defaults_work_on_a_developer_machine():
    settings = from_environ({})
    assert settings.bootstrap_servers == ("127.0.0.1:9092",)
    assert settings.topic("users") == "kvstore.users"
    assert settings.partitions == 6
    assert settings.security.protocol == "PLAINTEXT"


def test_values_are_read_from_the_environment():
    settings = from_environ(
        {
            "KAFKA_BOOTSTRAP_SERVERS": "a:9092, b:9093",
            "KVSTORE_ADVERTISED_URL": "http://10.0.0.5:8001/",
            "KVSTORE_CACHE_PATH": "/tmp/x.sqlite3",
            "KVSTORE_TOPIC_PREFIX": "",
            "KVSTORE_PARTITIONS": "12",
            "KVSTORE_TOPIC_CONFIGS": "segment.ms=1000, min.cleanable.dirty.ratio=0.1",
            "KVSTORE_PEER_ALLOWLIST": "http://a:8000,http://b:8000/",
        }
    )
    assert settings.bootstrap_servers == ("a:9092", "b:9093")
    assert settings.advertised_url == "http://10.0.0.5:8001"
    assert settings.cache_path == Path("/tmp/x.sqlite3")
    assert settings.topic("kv") == "kv"
    assert settings.partitions == 12
    assert settings.topic_configs == (
        ("segment.ms", "1000"),
        ("min.cleanable.dirty.ratio", "0.1"),
    )
    assert settings.peer_allowlist == ("http://a:8000", "http://b:8000")


@pytest.mark.parametrize(
    "environ, message",
    [
        ({"KVSTORE_PARTITIONS": "six"}, "KVSTORE_PARTITIONS must be a whole number"),
        ({"KVSTORE_PARTITIONS": "0"}, "KVSTORE_PARTITIONS must be at least 1"),
        (
            {"KVSTORE_REPLICATION_FACTOR": "-1"},
            "KVSTORE_REPLICATION_FACTOR must be at least 1",
        ),
        ({"KVSTORE_ADVERTISED_URL": "localhost:8000"}, "KVSTORE_ADVERTISED_URL"),
        ({"KVSTORE_PEER_ALLOWLIST": "ftp://x"}, "KVSTORE_PEER_ALLOWLIST"),
        ({"KVSTORE_TOPIC_PREFIX": "a/b"}, "KVSTORE_TOPIC_PREFIX"),
        ({"KVSTORE_TOPIC_CONFIGS": "segment.ms"}, "key=value"),
        ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, "KAFKA_SECURITY_PROTOCOL must be one of"),
        ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "needs KAFKA_SASL_MECHANISM"),
        (
            {
                "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
                "KAFKA_SASL_USERNAME": "kvstore",
            },
            "and KAFKA_SASL_PASSWORD",
        ),
        ({"KAFKA_SSL_CAFILE": "/no/such/ca.pem"}, "KAFKA_SSL_CAFILE: cannot read"),
        ({"KAFKA_SSL_KEYFILE": __file__}, "KAFKA_SSL_KEYFILE is set without"),
        ({"KVSTORE_COMPRESSION": "brotli"}, "KVSTORE_COMPRESSION must be one of"),
        ({"KAFKA_BOOTSTRAP_SERVERS": " , "}, "lists nothing"),
    ],
)
def test_malformed_values_fail_at_start_naming_the_variable(environ, message):
    with pytest.raises(ImproperlyConfigured, match=message):
        from_environ(environ)


def test_system_check_warns_when_the_advertised_url_is_not_allowed(settings):
    import dataclasses

    from django.core.checks import run_checks

    settings.KVSTORE = dataclasses.replace(
        from_environ({}),
        advertised_url="http://10.1.2.3:8000",
        peer_allowlist=("http://10.1.2.4:8000",),
    )
    assert [m.id for m in run_checks()] == ["kvstore.W002"]
    settings.KVSTORE = dataclasses.replace(
        settings.KVSTORE, peer_allowlist=("http://10.1.2.3:8000",)
    )
    assert run_checks() == []


@pytest.mark.parametrize(
    "url",
    [
        "http://evil.example\\@127.0.0.1:8000",
        "http://evil.example@127.0.0.1:8000",
        "http://user:pw@127.0.0.1:8000",
        "http://127.0.0.1:8000?x=1",
        "http://127.0.0.1:8000#x",
        "http://127.0.0.1:8000\\evil",
        "http://127.0.0.1 :8000",
        "http://127.0.0.1:99999",
        "http://127.0.0.1:8000/a b",
        "javascript://127.0.0.1/",
        "http:///127.0.0.1:8000",
    ],
)
def test_urls_browsers_and_urlsplit_could_read_apart_are_no_base_urls(url):
    with pytest.raises(ImproperlyConfigured, match="KVSTORE_ADVERTISED_URL"):
        from_environ({"KVSTORE_ADVERTISED_URL": url})
    with pytest.raises(ImproperlyConfigured, match="KVSTORE_PEER_ALLOWLIST"):
        from_environ({"KVSTORE_PEER_ALLOWLIST": url})
    assert not routing.peer_allowed(from_environ({}), url)


@pytest.mark.parametrize(
    "url, allowed",
    [
        ("http://127.0.0.1:8001", True),
        ("http://localhost:8001/", True),
        ("https://[::1]:8001", True),
        ("http://127.9.9.9:1/prefix", True),
        ("http://10.0.0.1:8001", False),
        ("http://evil.example:8001", False),
        ("http://127.0.0.1.evil.example:8001", False),
    ],
)
def test_by_default_only_loopback_peers_are_redirect_targets(url, allowed):
    assert routing.peer_allowed(from_environ({}), url) is allowed


def test_allowed_hosts_default_to_the_advertised_host_and_loopback():
    hosts = default_hosts(from_environ({"KVSTORE_ADVERTISED_URL": "http://kv-a:8000"}))
    assert hosts == ["kv-a", "localhost", "127.0.0.1", "[::1]"]
    ipv6 = default_hosts(
        from_environ({"KVSTORE_ADVERTISED_URL": "http://[fd00::1]:80"})
    )
    assert ipv6[0] == "[fd00::1]"


def test_the_debug_error_page_never_shows_the_sasl_password(settings, rf):
    secret = "s3cret-sasl-pass"
    settings.DEBUG = True
    settings.KVSTORE = from_environ(
        {
            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "KAFKA_SASL_MECHANISM": "PLAIN",
            "KAFKA_SASL_USERNAME": "kv",
            "KAFKA_SASL_PASSWORD": secret,
        }
    )
    assert settings.KVSTORE.security.sasl_password == secret
    page = _debug_page(rf.get("/"), settings.KVSTORE)
    assert "boom" in page and "KVSTORE" in page and "sasl_username" in page
    assert "sasl_plain_password" in page and secret not in page


def _debug_page(request, store):
    """Django's DEBUG 500 page for an error in a frame holding the settings and a Kafka
    client's configuration (the secret is in neither frame's own variables)."""
    import sys

    from django.views.debug import technical_500_response

    def failing(store):
        config = {"sasl_plain_password": store.security.sasl_password}  # noqa: F841
        raise RuntimeError("boom")

    try:
        failing(store)
    except RuntimeError:
        return technical_500_response(request, *sys.exc_info()).content.decode()
