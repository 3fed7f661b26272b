"""Our murmur2 partitioner agrees with Kafka's default partitioner, byte for byte."""

import random

import pytest
from kafka.partitioner.default import DefaultPartitioner, murmur2 as kafka_murmur2

from kvstore.partitioner import murmur2, partition_for


def test_known_vectors_of_the_java_client():
    # From Kafka's UtilsTest.testMurmur2 (Java client), as signed ints.
    assert murmur2(b"21") == -973932308
    assert murmur2(b"foobar") == -790332482
    assert murmur2(b"a-little-bit-long-string") == -985981536
    assert murmur2(b"a-little-bit-longer-string") == -1486304829
    assert murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8") == -58897971
    assert murmur2(b"abc") == 479470107


class OneTopicCluster:
    """Just enough cluster metadata for kafka-python's DefaultPartitioner."""

    def __init__(self, partitions):
        self.all = set(range(partitions))

    def topics(self):
        return {"t"}

    def partitions_for_topic(self, topic):
        return self.all

    available_partitions_for_topic = partitions_for_topic


@pytest.mark.parametrize("partitions", [1, 3, 6, 12, 50])
def test_agrees_with_kafka_python_on_random_keys(partitions):
    rng = random.Random(partitions)
    cluster, kafka_partitioner = OneTopicCluster(partitions), DefaultPartitioner()
    for _ in range(2000):
        key = "".join(
            rng.choice("abcdefghijklmnopqrstuvwxyzé€😀-_/ ")
            for _ in range(rng.randint(1, 40))
        )
        raw = key.encode()
        assert murmur2(raw) & 0x7FFFFFFF == kafka_murmur2(raw) & 0x7FFFFFFF
        assert partition_for(key, partitions) == kafka_partitioner.partition(
            "t", key, raw, None, None, cluster
        )


def test_rejects_a_topic_without_partitions():
    with pytest.raises(ValueError):
        partition_for("k", 0)
