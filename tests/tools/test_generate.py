"""`produce_traffic` on a real broker: everything arrives once, and every key sits where murmur2 puts it."""

from __future__ import annotations

import time
import uuid
from collections import Counter

import pytest
from confluent_kafka import Consumer, TopicPartition

from paystream.clients import consumer_config
from paystream.settings import Settings
from tools.cli.generate import produce_traffic
from tools.traffic import Traffic, recent_start_ts

pytestmark = pytest.mark.broker


def java_murmur2(data: bytes) -> int:
    """Kafka's `Utils.murmur2` (seed 0x9747b28c), written out here independently of paystream's copy."""
    m, r = 0x5BD1E995, 24
    length = len(data)
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    for i in range(0, length - length % 4, 4):
        k = int.from_bytes(data[i:i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    tail = data[length - length % 4:]
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
    return h - (1 << 32) if h & 0x80000000 else h


def test_java_murmur2_matches_kafkas_known_values() -> None:
    # values from Kafka's UtilsTest.testMurmur2 (Java signed ints)
    assert java_murmur2(b"21") == -973932308
    assert java_murmur2(b"foobar") == -790332482
    assert java_murmur2(b"a-little-bit-long-string") == -985981536
    assert java_murmur2(b"a-little-bit-longer-string") == -1486304829
    assert java_murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8") == -58897971
    assert java_murmur2(bytes([ord("a"), ord("b"), ord("c")])) == 479470107


def _read_all(settings: Settings, topic: str) -> list[tuple[int, bytes | None, bytes | None]]:
    """Every committed record of `topic`, as (partition, key, value), up to its high watermarks."""
    consumer = Consumer(consumer_config(settings, f"test-{uuid.uuid4().hex}"))
    try:
        ends = {}
        for partition in range(settings.kafka.partitions):
            _low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=30)
            ends[partition] = high
        consumer.assign([TopicPartition(topic, p, 0) for p in ends])
        records: list[tuple[int, bytes | None, bytes | None]] = []
        position = dict.fromkeys(ends, 0)
        deadline = time.monotonic() + 60
        while any(position[p] < ends[p] for p in ends) and time.monotonic() < deadline:
            for message in consumer.consume(1_000, 0.5):
                assert message.error() is None, message.error()
                records.append((message.partition(), message.key(), message.value()))
                position[message.partition()] = message.offset() + 1
        assert all(position[p] >= ends[p] for p in ends), (position, ends)
        return records
    finally:
        consumer.close()


def test_generated_traffic_arrives_once_and_keys_land_on_their_murmur2_partition(make_settings) -> None:
    partitions = 4
    settings = make_settings(partitions=partitions)
    start_ts = recent_start_ts(5_000, int(time.time() * 1000))
    summary = produce_traffic(settings, accounts=300, payments=5_000, seed=9, bad_ratio=0.05, progress=False,
                              start_ts=start_ts)
    assert not summary.delivery_errors
    assert summary.delivered == sum(summary.records.values())

    payments = _read_all(settings, settings.topics.payments)
    customers = _read_all(settings, settings.topics.customers)
    assert len(payments) == summary.records["payments"] == 5_000
    assert len(customers) == summary.records["customers"]

    expected = [(key, value) for kind, key, value in Traffic(300, 5_000, 9, 0.05, start_ts) if kind == "payments"]
    assert Counter((key, value) for _, key, value in payments) == Counter(expected), "exactly the generated records"
    keyed = [(partition, key) for partition, key, _ in payments if key is not None]
    assert keyed
    for partition, key in keyed:
        assert partition == (java_murmur2(key) & 0x7FFFFFFF) % partitions, key
    # per partition, the order of one key's records is the order they were generated in
    for partition in range(partitions):
        read = [(key, value) for p, key, value in payments if p == partition and key is not None]
        wanted = [(key, value) for key, value in expected
                  if key is not None and (java_murmur2(key) & 0x7FFFFFFF) % partitions == partition]
        assert read == wanted
    for partition, key, _ in customers:
        assert key is not None and partition == (java_murmur2(key) & 0x7FFFFFFF) % partitions


def test_undeliverable_records_are_counted_and_make_the_command_fail(make_settings, capsys) -> None:
    import argparse

    from tools.cli.generate import handler

    settings = make_settings(partitions=2, kafka={"client": {"message.timeout.ms": "3000"}})
    missing = _with_payments_topic(settings, f"no-such-topic-{uuid.uuid4().hex[:8]}")
    summary = produce_traffic(missing, accounts=20, payments=50, seed=1, bad_ratio=0.0, progress=False)
    assert sum(summary.delivery_errors.values()) == 50
    assert summary.delivered == summary.records["customers"] > 0

    args = argparse.Namespace(settings=missing, accounts=20, payments=50, seed=1, bad_ratio=0.0, start_ts=None,
                              simple=False, out=None, no_progress=True)
    assert handler(args) == 1
    assert "were not delivered" in capsys.readouterr().err


def _with_payments_topic(settings: Settings, topic: str) -> Settings:
    """The same settings with the payments topic renamed (to one that does not exist)."""
    import msgspec

    return msgspec.structs.replace(settings, topics=msgspec.structs.replace(settings.topics, payments=topic))
