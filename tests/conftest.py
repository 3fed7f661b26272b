"""Shared fixtures: one real Kafka broker per session, and per-test settings that
isolate topics."""

import dataclasses
import uuid

import pytest

from kvstore import conf
from tests import brokers


@pytest.fixture(scope="session")
def kafka_bootstrap():
    """Bootstrap servers of the session's real broker (see tests/brokers.py for where it
    comes from)."""
    with brokers.session_broker() as (bootstrap, source):
        print(f"\nKafka for this session: {bootstrap} ({source})")
        yield bootstrap


@pytest.fixture(scope="session")
def _three_broker_cluster():
    with brokers.LocalKafka(nodes=3) as cluster:
        yield cluster


@pytest.fixture
def three_brokers(_three_broker_cluster):
    """A 3-node cluster of the session's own (`brokers.LocalKafka`, started on first
    use), for fault tests: `three_brokers.node("kill", 2)`; topics made with
    `isolated_settings(three_brokers.bootstrap, **brokers.REPLICATED)` have RF 3 and
    min.insync.replicas 2. Every node is back and serving after each test."""
    yield _three_broker_cluster
    _three_broker_cluster.heal()


@pytest.fixture
def store_settings(settings, kafka_bootstrap):
    """StoreSettings for one test: its own topic prefix and group id, so tests never
    share data."""
    unique = uuid.uuid4().hex[:10]
    settings.KVSTORE = dataclasses.replace(
        conf.from_environ({}),
        bootstrap_servers=tuple(kafka_bootstrap.split(",")),
        topic_prefix=f"test-{unique}.",
        group_id=f"test-{unique}",
        partitions=3,
    )
    return settings.KVSTORE


@pytest.fixture
def with_settings(settings):
    """Change fields of the test's StoreSettings: `with_settings(partitions=2)`."""

    def change(**fields):
        settings.KVSTORE = dataclasses.replace(settings.KVSTORE, **fields)
        return settings.KVSTORE

    return change


@pytest.fixture(scope="session")
def two_instances(kafka_bootstrap, tmp_path_factory):
    """Two real instances in one group (4 partitions, auth off), shared by the tests
    that only watch them (metrics, Server-Timing, status, the cluster page)."""
    from tests.instances import isolated_settings
    from tests.test_cluster import make_cluster

    settings = isolated_settings(kafka_bootstrap, partitions=4)
    nodes = make_cluster(settings, tmp_path_factory.mktemp("two"), 2)
    yield nodes
    for node in nodes:
        node.stop()
