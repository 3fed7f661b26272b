"""Settings come from the environment, with defaults, and fail clearly on malformed
values."""

from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from kvstore.conf import from_environ


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
