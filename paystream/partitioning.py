"""Kafka's default partitioner, exactly as the Java client computes it.

A keyed record goes to `toPositive(murmur2(key)) % partitions`. paystream's tasks own one
partition each, so a `payments` record found elsewhere would be decided against the wrong
account state; the engine sends it to the DLQ as `misrouted` instead.

>>> murmur2(b"21")
-973932308
>>> partition_for(b"21", 12)
0
"""

from __future__ import annotations

from typing import Final

_SEED: Final = 0x9747B28C
_M: Final = 0x5BD1E995
_MASK: Final = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Java's `org.apache.kafka.common.utils.Utils.murmur2`: a signed 32-bit hash."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    end = length - length % 4
    for i in range(0, end, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    tail = length % 4
    if tail == 3:
        h ^= data[end + 2] << 16
    if tail >= 2:
        h ^= data[end + 1] << 8
    if tail >= 1:
        h ^= data[end]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h - 0x1_0000_0000 if h & 0x8000_0000 else h


def partition_for(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (and librdkafka's `murmur2_random`) picks for `key`."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions
