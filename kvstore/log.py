"""The log: the one module that imports the Kafka client (kafka-python).

Everything else talks to the functions and classes here and sees only the store's own exceptions
(`StoreUnavailable`), never kafka-python's types or errors.
"""
import collections
import contextlib
import dataclasses
import threading

import kafka.errors
from kafka import ConsumerRebalanceListener, KafkaConsumer, KafkaProducer, OffsetAndMetadata, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, OffsetSpec
from kafka.coordinator.assignors.cooperative_sticky import CooperativeStickyAssignor

from kvstore.errors import StoreUnavailable

UNKNOWN_TOPIC = kafka.errors.UnknownTopicOrPartitionError.errno


def client_config(settings):
    """Connection settings shared by every client: bootstrap servers, TLS and SASL."""
    security = settings.security
    config = {
        "bootstrap_servers": list(settings.bootstrap_servers),
        "security_protocol": security.protocol,
        # Reconnect within a second of a broker coming back, not after kafka-python's 30 s backoff.
        "reconnect_backoff_max_ms": 1000,
    }
    if security.sasl_mechanism:
        config.update(
            sasl_mechanism=security.sasl_mechanism,
            sasl_plain_username=security.sasl_username,
            sasl_plain_password=security.sasl_password,
        )
    for option in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
        if getattr(security, option):
            config[option] = getattr(security, option)
    return config


@dataclasses.dataclass(frozen=True)
class TopicState:
    """What the cluster says of one topic."""

    name: str
    partitions: int
    replication_factor: int
    configs: dict


@contextlib.contextmanager
def admin(settings, timeout_ms=10000):
    """An `Admin` for the duration of a `with` block."""
    try:
        client = KafkaAdminClient(
            request_timeout_ms=timeout_ms, bootstrap_timeout_ms=timeout_ms, **client_config(settings)
        )
    except kafka.errors.KafkaError as exc:
        raise StoreUnavailable(f"cannot reach Kafka at {','.join(settings.bootstrap_servers)}: {exc}") from exc
    try:
        yield Admin(client)
    finally:
        client.close()


class Admin:
    """Topic administration and offset look-ups, in the store's terms."""

    def __init__(self, client):
        self._client = client

    def describe(self, names):
        """{name: TopicState or None when the topic does not exist}."""
        with _translated("describe topics"):
            described = {t["name"]: t for t in self._client.describe_topics(list(names))}
            present = [n for n in names if described.get(n, {}).get("error_code") == 0]
            configs = self._configs(present) if present else {}
        states = {}
        for name in names:
            topic = described.get(name)
            if topic is None or topic["error_code"] == UNKNOWN_TOPIC:
                states[name] = None
                continue
            if topic["error_code"] != 0:
                raise StoreUnavailable(f"Kafka cannot describe topic {name}: {kafka.errors.for_code(topic['error_code']).__name__}")
            partitions = topic["partitions"]
            states[name] = TopicState(
                name=name,
                partitions=len(partitions),
                replication_factor=min((len(p["replica_nodes"]) for p in partitions), default=0),
                configs=configs[name],
            )
        return states

    def _configs(self, names):
        resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
        described = self._client.describe_configs(resources, config_filter="all")["topic"]
        return {name: {key: entry["value"] for key, entry in described[name].items()} for name in names}

    def create(self, name, partitions, replication_factor, configs):
        """Create one topic and wait until every partition has a leader. Already there is no error."""
        spec = {name: {"num_partitions": partitions, "replication_factor": replication_factor, "configs": dict(configs)}}
        with _translated(f"create topic {name}"):
            result = self._client.create_topics(spec, raise_errors=False)
            code = result["topics"][0]["error_code"]
            if code not in (0, kafka.errors.TopicAlreadyExistsError.errno):
                error = kafka.errors.for_code(code)
                message = result["topics"][0].get("error_message") or error.__name__
                raise StoreUnavailable(f"Kafka refused to create topic {name}: {message}")
            self._client.wait_for_topics([name], timeout_ms=30000)

    def alter_configs(self, name, configs):
        """Set topic-level configs (the ones given; others keep their values)."""
        with _translated(f"alter configs of {name}"):
            self._client.alter_configs([ConfigResource(ConfigResourceType.TOPIC, name, dict(configs))], incremental=True)

    def delete(self, names):
        with _translated("delete topics"):
            self._client.delete_topics(list(names), raise_errors=False)

    def group(self, group_id):
        """(state, member count, {(topic, partition): committed offset}) of a consumer group."""
        with _translated(f"describe group {group_id}"):
            described = self._client.describe_groups([group_id])[group_id]
            committed = self._client.list_group_offsets({group_id: None}).get(group_id, {})
        offsets = {(tp.topic, tp.partition): meta.offset for tp, meta in committed.items()}
        return described["group_state"], len(described["members"]), offsets

    def offsets(self, topic, partitions, latest=True):
        """{partition: the end offset (latest) or the log start offset (earliest)}."""
        spec = OffsetSpec.LATEST if latest else OffsetSpec.EARLIEST
        with _translated(f"list offsets of {topic}"):
            found = self._client.list_partition_offsets({TopicPartition(topic, p): spec for p in partitions})
        return {tp.partition: answer.offset for tp, answer in found.items()}


@contextlib.contextmanager
def _translated(action):
    """Re-raise kafka-python's errors as StoreUnavailable, naming what was being done."""
    try:
        yield
    except kafka.errors.KafkaError as exc:
        raise StoreUnavailable(f"Kafka failed to {action}: {exc}") from exc


# A record batch costs about this much beyond its key and value; a record bigger than the topic's
# max.message.bytes minus it is refused by the broker.
RECORD_OVERHEAD = 128


@dataclasses.dataclass(frozen=True)
class Written:
    """Where a record landed: its version."""

    partition: int
    offset: int


class Producer:
    """An idempotent, acks=all producer. Make one per process, after fork (gunicorn workers)."""

    def __init__(self, settings, timeout_s):
        self.timeout_s = timeout_s
        try:
            self._producer = KafkaProducer(
                acks="all",
                enable_idempotence=True,
                linger_ms=1,
                max_block_ms=int(timeout_s * 1000),
                request_timeout_ms=int(timeout_s * 1000),
                delivery_timeout_ms=int(timeout_s * 1000) + 1000,
                max_request_size=16 * 1024 * 1024,
                bootstrap_timeout_ms=int(timeout_s * 1000),
                **client_config(settings),
            )
        except kafka.errors.KafkaError as exc:
            raise StoreUnavailable(f"cannot reach Kafka: {exc}") from exc

    def send(self, topic, partition, key, value):
        """Write one record (value None: a tombstone) and wait for the broker's ack; returns `Written`."""
        with _translated(f"write to {topic}"):
            future = self._producer.send(topic, key=key, value=value, partition=partition)
            metadata = future.get(timeout=self.timeout_s + 2)
        return Written(metadata.partition, metadata.offset)

    def close(self):
        self._producer.close(timeout=5)


class _Events(ConsumerRebalanceListener):
    """Records rebalance events for the main loop. kafka-python calls these on its IO thread, where
    blocking calls fail, so they do nothing but append."""

    def __init__(self):
        self.queue = collections.deque()
        self.lock = threading.Lock()

    def _record(self, kind, partitions):
        with self.lock:
            self.queue.append((kind, sorted((tp.topic, tp.partition) for tp in partitions)))

    def on_partitions_revoked(self, revoked):
        self._record("revoked", revoked)

    def on_partitions_assigned(self, assigned):
        self._record("assigned", assigned)

    def on_partitions_lost(self, lost):
        self._record("lost", lost)

    def drain(self):
        with self.lock:
            events = list(self.queue)
            self.queue.clear()
        return events


class GroupConsumer:
    """This instance's consumer-group member: subscribes to the namespace topics, reports rebalances as
    events, and lets its owner seek, poll records and commit positions. Partitions are (topic, partition)."""

    def __init__(self, settings, topics, session_timeout_ms, max_poll_records=5000):
        self._events = _Events()
        try:
            self._consumer = KafkaConsumer(
                group_id=settings.group_id,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                partition_assignment_strategy=[CooperativeStickyAssignor],
                session_timeout_ms=session_timeout_ms,
                heartbeat_interval_ms=max(100, session_timeout_ms // 4),
                max_poll_records=max_poll_records,
                fetch_max_wait_ms=100,
                max_partition_fetch_bytes=8 * 1024 * 1024,
                allow_auto_create_topics=False,
                # The group leader re-plans when partitions appear; stale metadata would delay that.
                metadata_max_age_ms=5000,
                **client_config(settings),
            )
            # Know every topic's partitions before joining: a leader that assigns from empty metadata
            # hands out nothing.
            for topic in topics:
                self._consumer.partitions_for_topic(topic)
            self._consumer.subscribe(list(topics), listener=self._events)
        except kafka.errors.KafkaError as exc:
            raise StoreUnavailable(f"cannot join the consumer group: {exc}") from exc

    def events(self):
        """Rebalance events since the last call, in order: [("assigned"|"revoked"|"lost", [(topic, partition)])]."""
        return self._events.drain()

    def poll(self, timeout_ms):
        """{(topic, partition): [record]}; a record has .offset, .key, .value (None: tombstone), .timestamp."""
        with _translated("poll"):
            fetched = self._consumer.poll(timeout_ms=timeout_ms)
        return {(tp.topic, tp.partition): records for tp, records in fetched.items()}

    def seek(self, topic, partition, offset):
        self._consumer.seek(TopicPartition(topic, partition), offset)

    def position(self, topic, partition):
        return self._consumer.position(TopicPartition(topic, partition))

    def highwater(self, topic, partition):
        """The end offset seen in the last fetch, or None."""
        return self._consumer.highwater(TopicPartition(topic, partition))

    def offsets(self, partitions):
        """{(topic, partition): (log start offset, end offset)}, asked of the brokers."""
        tps = [TopicPartition(t, p) for t, p in partitions]
        with _translated("list offsets"):
            starts = self._consumer.beginning_offsets(tps)
            ends = self._consumer.end_offsets(tps)
        return {(tp.topic, tp.partition): (starts[tp], ends[tp]) for tp in tps}

    def commit(self, positions):
        """Commit `{(topic, partition): next offset}` to the group, without waiting (tools show the lag)."""
        offsets = {TopicPartition(t, p): OffsetAndMetadata(o, "", -1) for (t, p), o in positions.items()}
        try:
            self._consumer.commit_async(offsets)
        except kafka.errors.KafkaError:
            pass  # a commit lost in a rebalance is retried after the next batch; the cache is the checkpoint

    def close(self):
        """Leave the group at once (the partitions move without waiting for a session timeout)."""
        self._consumer.close(autocommit=False, timeout_ms=5000)
