"""Topic administration and offset look-ups, in the store's terms."""

import contextlib
import dataclasses
import time

import kafka.errors
from kafka import TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, OffsetSpec

from kvstore import ownership
from kvstore.errors import StoreUnavailable
from kvstore.log.common import client_config, translated as _translated

UNKNOWN_TOPIC = kafka.errors.UnknownTopicOrPartitionError.errno


@dataclasses.dataclass(frozen=True)
class GroupMember:
    """One member of a consumer group, as the group coordinator describes it: the URL
    it advertises (None for a member that is not kvstore) and the partitions it holds,
    {topic: [partition]}."""

    member_id: str
    url: str | None
    assigned: dict


@dataclasses.dataclass(frozen=True)
class GroupState:
    state: str  # Stable, PreparingRebalance, CompletingRebalance, Empty, Dead
    members: tuple  # GroupMembers
    committed: dict  # {(topic, partition): the group's committed offset}


@dataclasses.dataclass(frozen=True)
class TopicState:
    """What the cluster says of one topic."""

    name: str
    partitions: int
    replication_factor: int
    configs: dict


def open_admin(settings, timeout_ms=10000):
    """A long-lived `Admin`; the caller closes it."""
    try:
        client = KafkaAdminClient(
            request_timeout_ms=timeout_ms,
            bootstrap_timeout_ms=timeout_ms,
            **client_config(settings),
        )
    except kafka.errors.KafkaError as exc:
        raise StoreUnavailable(
            f"cannot reach Kafka at {','.join(settings.bootstrap_servers)}: {exc}"
        ) from exc
    return Admin(client)


@contextlib.contextmanager
def admin(settings, timeout_ms=10000):
    """An `Admin` for the duration of a `with` block."""
    opened = open_admin(settings, timeout_ms)
    try:
        yield opened
    finally:
        opened.close()


class Admin:
    """Topic administration and offset look-ups, in the store's terms."""

    def __init__(self, client):
        self._client = client

    def close(self):
        self._client.close()

    def describe(self, names):
        """{name: TopicState or None when the topic does not exist}."""
        with _translated("describe topics"):
            described = {
                t["name"]: t for t in self._client.describe_topics(list(names))
            }
            present = [n for n in names if described.get(n, {}).get("error_code") == 0]
            configs = self._configs(present) if present else {}
        states = {}
        for name in names:
            topic = described.get(name)
            if topic is None or topic["error_code"] == UNKNOWN_TOPIC:
                states[name] = None
                continue
            if topic["error_code"] != 0:
                raise StoreUnavailable(
                    f"Kafka cannot describe topic {name}: "
                    f"{kafka.errors.for_code(topic['error_code']).__name__}"
                )
            partitions = topic["partitions"]
            states[name] = TopicState(
                name=name,
                partitions=len(partitions),
                replication_factor=min(
                    (len(p["replica_nodes"]) for p in partitions), default=0
                ),
                configs=configs[name],
            )
        return states

    def _configs(self, names, settle_s=10.0):
        """{name: {config: value}}, every config including defaults.

        A broker that has not yet learnt of a just-created topic answers with no
        configs (kafka-python drops the error code), so an empty answer is asked again
        until `settle_s` has passed, then reported as unavailable.
        """
        resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
        deadline = time.monotonic() + settle_s
        while True:
            described = self._client.describe_configs(
                resources, config_filter="all"
            ).get("topic", {})
            unknown = [name for name in names if not described.get(name)]
            if not unknown:
                break
            if time.monotonic() >= deadline:
                raise StoreUnavailable(
                    f"Kafka describes no configs for topic {unknown[0]} yet"
                )
            time.sleep(0.1)
        return {
            name: {key: entry["value"] for key, entry in described[name].items()}
            for name in names
        }

    def create(self, name, partitions, replication_factor, configs):
        """Create one topic and wait until every partition has a leader. Already there
        is no error."""
        spec = {
            name: {
                "num_partitions": partitions,
                "replication_factor": replication_factor,
                "configs": dict(configs),
            }
        }
        with _translated(f"create topic {name}"):
            result = self._client.create_topics(spec, raise_errors=False)
            code = result["topics"][0]["error_code"]
            if code not in (0, kafka.errors.TopicAlreadyExistsError.errno):
                error = kafka.errors.for_code(code)
                message = result["topics"][0].get("error_message") or error.__name__
                raise StoreUnavailable(
                    f"Kafka refused to create topic {name}: {message}"
                )
            self._client.wait_for_topics([name], timeout_ms=30000)

    def alter_configs(self, name, configs):
        """Set topic-level configs (the ones given; others keep their values)."""
        with _translated(f"alter configs of {name}"):
            self._client.alter_configs(
                [ConfigResource(ConfigResourceType.TOPIC, name, dict(configs))],
                incremental=True,
            )

    def delete(self, names):
        with _translated("delete topics"):
            self._client.delete_topics(list(names), raise_errors=False)

    def group(self, group_id):
        """(state, member count, {(topic, partition): committed offset}) of a consumer
        group."""
        described = self.describe_group(group_id)
        return described.state, len(described.members), described.committed

    def describe_group(self, group_id):
        """The GroupState of a consumer group: its members, what each holds, and its
        committed offsets."""
        with _translated(f"describe group {group_id}"):
            described = self._client.describe_groups([group_id])[group_id]
            committed = self._client.list_group_offsets({group_id: None}).get(
                group_id, {}
            )
        members = tuple(_member(member) for member in described["members"])
        offsets = {
            (tp.topic, tp.partition): meta.offset for tp, meta in committed.items()
        }
        return GroupState(described["group_state"], members, offsets)

    def offsets(self, topic, partitions, latest=True):
        """{partition: the end offset (latest) or the log start offset (earliest)}."""
        spec = OffsetSpec.LATEST if latest else OffsetSpec.EARLIEST
        with _translated(f"list offsets of {topic}"):
            found = self._client.list_partition_offsets(
                {TopicPartition(topic, p): spec for p in partitions}
            )
        return {tp.partition: answer.offset for tp, answer in found.items()}


def _member(described):
    """A GroupMember from DescribeGroups' decoded member."""
    metadata = described.get("member_metadata") or {}
    user_data = metadata.get("user_data") if isinstance(metadata, dict) else None
    if isinstance(user_data, str):  # kafka-python hands it over decoded
        user_data = user_data.encode()
    assignment = described.get("member_assignment") or {}
    assigned = {
        topic["topic"]: list(topic["partitions"])
        for topic in assignment.get("assigned_partitions", ())
    }
    return GroupMember(
        described["member_id"],
        ownership.decode_subscription(user_data or b""),
        assigned,
    )
