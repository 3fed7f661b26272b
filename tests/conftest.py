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
