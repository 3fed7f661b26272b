"""`kvstore_init` creates compacted, co-partitioned namespace topics and refuses
misconfigured ones."""

import os
import subprocess
import sys

import pytest
from django.core.checks import run_checks
from django.core.management import CommandError, call_command

from kvstore import log, topics
from kvstore.errors import TopicMisconfigured
from kvstore.conf import from_environ
from kvstore.log import TopicState
from tests.brokers import ROOT


def state(name, partitions=3, policy="compact", replication_factor=1):
    return TopicState(name, partitions, replication_factor, {"cleanup.policy": policy})


class TestPlan:
    settings = from_environ({"KVSTORE_PARTITIONS": "3"})

    def test_creates_what_is_missing(self):
        plan = topics.plan(
            self.settings, {"kvstore.users": state("kvstore.users"), "kvstore.kv": None}
        )
        assert plan.create == ("kvstore.kv",)
        assert plan.partitions == 3

    @pytest.mark.parametrize("policy", ["delete", "compact,delete", ""])
    def test_refuses_a_topic_that_is_not_only_compacted(self, policy):
        with pytest.raises(TopicMisconfigured, match="cleanup.policy"):
            topics.plan(
                self.settings,
                {
                    "kvstore.users": state("kvstore.users", policy=policy),
                    "kvstore.kv": None,
                },
            )

    def test_refuses_topics_with_different_partition_counts(self):
        existing = {
            "kvstore.users": state("kvstore.users", 3),
            "kvstore.kv": state("kvstore.kv", 4),
        }
        with pytest.raises(TopicMisconfigured, match="co-partitioned"):
            topics.plan(self.settings, existing)

    def test_refuses_a_count_other_than_configured(self):
        with pytest.raises(TopicMisconfigured, match="set KVSTORE_PARTITIONS=4"):
            topics.plan(
                self.settings,
                {"kvstore.users": state("kvstore.users", 4), "kvstore.kv": None},
            )

    def test_notes_a_different_replication_factor(self):
        plan = topics.plan(
            self.settings,
            {
                "kvstore.users": state("kvstore.users", replication_factor=3),
                "kvstore.kv": None,
            },
        )
        assert "replication factor 3" in plan.notes[0]


def describe(settings):
    with log.admin(settings) as admin:
        return admin.describe(list(settings.topics().values()))


def test_init_creates_compacted_co_partitioned_topics(store_settings, capsys):
    call_command("kvstore_init")
    described = describe(store_settings)
    for namespace in ("users", "kv"):
        topic = described[store_settings.topic(namespace)]
        assert topic.partitions == 3
        assert topic.replication_factor == 1
        assert topic.configs["cleanup.policy"] == "compact"
    assert "created" in capsys.readouterr().out


def test_init_is_idempotent(store_settings, capsys):
    call_command("kvstore_init")
    capsys.readouterr()
    call_command("kvstore_init")
    out = capsys.readouterr().out
    assert "created" not in out
    assert out.count("verified") == 2


def test_init_applies_extra_topic_configs(store_settings, with_settings):
    with_settings(topic_configs=(("max.message.bytes", "200000"),))
    call_command("kvstore_init")
    assert (
        describe(store_settings)[store_settings.topic("kv")].configs[
            "max.message.bytes"
        ]
        == "200000"
    )


def test_init_refuses_a_topic_that_is_not_compacted(store_settings):
    with log.admin(store_settings) as admin:
        admin.create(store_settings.topic("users"), 3, 1, {"cleanup.policy": "delete"})
    with pytest.raises(CommandError, match="cleanup.policy='delete'"):
        call_command("kvstore_init")
    assert (
        describe(store_settings)[store_settings.topic("kv")] is None
    ), "nothing is created when refusing"


def test_init_refuses_mismatched_partition_counts(store_settings, with_settings):
    with log.admin(store_settings) as admin:
        admin.create(store_settings.topic("users"), 3, 1, {"cleanup.policy": "compact"})
        admin.create(store_settings.topic("kv"), 5, 1, {"cleanup.policy": "compact"})
    with pytest.raises(CommandError, match="different partition counts"):
        call_command("kvstore_init")


def test_init_exits_non_zero_with_a_clear_message(store_settings):
    with log.admin(store_settings) as admin:
        admin.create(store_settings.topic("kv"), 2, 1, {"cleanup.policy": "compact"})
    env = dict(
        os.environ,
        KAFKA_BOOTSTRAP_SERVERS=",".join(store_settings.bootstrap_servers),
        KVSTORE_TOPIC_PREFIX=store_settings.topic_prefix,
        KVSTORE_PARTITIONS="3",
    )
    done = subprocess.run(
        [sys.executable, "manage.py", "kvstore_init"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert (
        "CommandError: the namespace topics have 2 partitions but KVSTORE_PARTITIONS=3"
        in done.stderr
    )


def test_init_without_a_broker_fails_clearly(store_settings, with_settings):
    with_settings(bootstrap_servers=("127.0.0.1:1",))
    with pytest.raises(CommandError, match="cannot reach Kafka at 127.0.0.1:1"):
        call_command("kvstore_init", timeout=2)


def test_system_check_reports_missing_and_misconfigured_topics(store_settings):
    ids = lambda: [
        m.id for m in run_checks(tags=["kafka"], include_deployment_checks=True)
    ]  # noqa: E731
    assert ids() == ["kvstore.W001"]
    with log.admin(store_settings) as admin:
        admin.create(store_settings.topic("users"), 3, 1, {"cleanup.policy": "delete"})
    assert ids() == ["kvstore.E003"]


def test_system_check_warns_of_an_idempotency_window_past_half_the_lag(
    store_settings, with_settings
):
    ids = lambda: [
        m.id for m in run_checks(tags=["kafka"], include_deployment_checks=True)
    ]  # noqa: E731
    call_command("kvstore_init")  # a compaction lag of an hour
    assert ids() == []
    with_settings(idempotency_window=1801)
    assert ids() == ["kvstore.W005"]
