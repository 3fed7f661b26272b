"""Key → partition: murmur2 over the topic's real partition count, as Kafka's Java
client (and kafka-python's DefaultPartitioner) compute it, so the router and the
producer always agree.
"""


def murmur2(data):
    """Kafka's 32-bit murmur2 of `data` (bytes), as a signed int, seed 0x9747b28c."""
    length = len(data)
    seed, m, r = 0x9747B28C, 0x5BD1E995, 24
    h = (seed ^ length) & 0xFFFFFFFF
    whole = length // 4
    for i in range(whole):
        k = int.from_bytes(data[4 * i : 4 * i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    tail = data[4 * whole :]
    if len(tail) >= 3:
        h ^= tail[2] << 16
    if len(tail) >= 2:
        h ^= tail[1] << 8
    if tail:
        h ^= tail[0]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h - 0x100000000 if h & 0x80000000 else h


def partition_for(key, partitions):
    """The partition of `key` (str) in a topic of `partitions` partitions."""
    if partitions < 1:
        raise ValueError("a topic has at least one partition")
    return (murmur2(key.encode("utf-8")) & 0x7FFFFFFF) % partitions
