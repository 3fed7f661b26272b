"""Key → partition: murmur2 over the topic's real partition count, as Kafka's Java
client (and kafka-python's DefaultPartitioner) compute it, so the router and the
producer always agree, and the consumer can tell a record that another partitioner put
on the wrong partition.
"""

import struct

_M = 0x5BD1E995
_MASK = 0xFFFFFFFF
_WORDS = {}  # length in 4-byte words -> its struct, so one call unpacks a whole key


def murmur2(data):
    """Kafka's 32-bit murmur2 of `data` (bytes), as a signed int, seed 0x9747b28c."""
    length = len(data)
    h = (0x9747B28C ^ length) & _MASK
    whole = length >> 2
    if whole:
        words = _WORDS.get(whole)
        if words is None:
            words = _WORDS[whole] = struct.Struct(f"<{whole}I")
        for k in words.unpack_from(data):
            k = (k * _M) & _MASK
            k ^= k >> 24
            h = ((h * _M) ^ (k * _M)) & _MASK
    tail = length & 3
    if tail:
        i = whole << 2
        if tail == 3:
            h ^= data[i + 2] << 16
        if tail >= 2:
            h ^= data[i + 1] << 8
        h = ((h ^ data[i]) * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h - 0x100000000 if h & 0x80000000 else h


def partition_of_bytes(key, partitions):
    """The partition of a record key (bytes) in a topic of `partitions` partitions."""
    if partitions < 1:
        raise ValueError("a topic has at least one partition")
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def partition_for(key, partitions):
    """The partition of `key` (str) in a topic of `partitions` partitions."""
    return partition_of_bytes(key.encode("utf-8"), partitions)
