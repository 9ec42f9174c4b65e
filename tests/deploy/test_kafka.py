"""The real broker does what paystream relies on: transactions, isolation levels, topic layout."""

from __future__ import annotations

import time
import uuid

import msgspec
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from paystream.clients import consumer_config, producer_config
from paystream.settings import Settings
from tools.topics import RETENTION_MS, TopicError, create_topics, describe_topics

Record = tuple[bytes, bytes]


def _transactional_producer(settings: Settings) -> Producer:
    producer = Producer(producer_config(settings, **{"transactional.id": f"test-{uuid.uuid4().hex}"}))
    producer.init_transactions(30)
    return producer


def _write(producer: Producer, topic: str, records: list[Record], commit: bool) -> None:
    producer.begin_transaction()
    for key, value in records:
        producer.produce(topic, value=value, key=key)
        producer.poll(0)
    if commit:
        producer.commit_transaction(30)
    else:
        producer.flush(30)  # the records reach the log before the abort marker does
        producer.abort_transaction(30)


def _read(settings: Settings, topic: str, isolation: str, until: set[Record], timeout_s: float = 30.0) -> list[Record]:
    """Read `topic` from the beginning with `isolation` until every record in `until` was seen."""
    consumer = Consumer(consumer_config(settings, f"test-{uuid.uuid4().hex}", **{"isolation.level": isolation}))
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(settings.kafka.partitions)])
    seen: list[Record] = []
    deadline = time.monotonic() + timeout_s
    try:
        while not until <= set(seen) and time.monotonic() < deadline:
            for message in consumer.consume(1000, 0.5):
                assert message.error() is None, message.error()
                seen.append((message.key(), message.value()))
    finally:
        consumer.close()
    assert until <= set(seen), f"only {len(set(seen) & until)} of {len(until)} records arrived"
    return seen


def _records(tag: str, count: int) -> list[Record]:
    return [(f"acct-{i % 37}".encode(), f'{{"tag":"{tag}","n":{i}}}'.encode()) for i in range(count)]


def test_committed_transaction_is_read_back_exactly(make_settings) -> None:
    settings = make_settings()
    records = _records("committed", 500)
    producer = _transactional_producer(settings)
    _write(producer, settings.topics.payments, records, commit=True)

    seen = _read(settings, settings.topics.payments, "read_committed", until=set(records))

    assert sorted(seen) == sorted(records)  # every record once, nothing else


def test_aborted_transaction_is_invisible_to_read_committed_only(make_settings) -> None:
    settings = make_settings()
    aborted, committed = _records("aborted", 200), _records("committed", 200)
    producer = _transactional_producer(settings)
    _write(producer, settings.topics.decisions, aborted, commit=False)
    _write(producer, settings.topics.decisions, committed, commit=True)

    # the committed batch lies after the aborted one in every partition, so reaching it means
    # read_committed has gone past the aborted records
    committed_view = _read(settings, settings.topics.decisions, "read_committed", until=set(committed))
    uncommitted_view = _read(settings, settings.topics.decisions, "read_uncommitted",
                             until=set(committed) | set(aborted))

    assert sorted(committed_view) == sorted(committed)
    assert sorted(uncommitted_view) == sorted(aborted + committed)


def test_topics_have_the_configured_layout(make_settings) -> None:
    settings = make_settings(partitions=3)
    compacted = {settings.topics.customers, settings.topics.balances, settings.changelog_topic, settings.topics.rules}

    infos = {info.name: info for info in describe_topics(settings)}

    expected = {settings.topics.payments, settings.topics.customers, *settings.topics.outputs(),
                settings.credits_topic, settings.changelog_topic, settings.topics.rules}
    assert set(infos) == expected
    for name, info in infos.items():
        assert info.partitions == (1 if name == settings.topics.rules else 3), name  # one record rules
        assert info.replication_factor == 1, name  # one broker: min(3, 1)
        assert info.min_insync_replicas == 1, name  # min(2, 1)
        if name in compacted:
            assert info.cleanup_policy == "compact", name
        elif name == settings.credits_topic:  # internal: kept until consumed (then deleted by the tasks)
            assert (info.cleanup_policy, info.retention_ms) == ("delete", -1), name
        else:
            assert (info.cleanup_policy, info.retention_ms) == ("delete", RETENTION_MS), name
    # the engine's tasks join payments and credits by partition
    assert infos[settings.credits_topic].partitions == infos[settings.topics.payments].partitions


def test_create_topics_twice_is_harmless(make_settings) -> None:
    settings = make_settings()
    before = describe_topics(settings)

    again = create_topics(settings)

    assert again == [info.name for info in before]
    assert describe_topics(settings) == before


def test_existing_topic_with_other_partition_count_is_an_error(make_settings) -> None:
    settings = make_settings(partitions=4)
    wider = msgspec.structs.replace(settings, kafka=msgspec.structs.replace(settings.kafka, partitions=6))

    with pytest.raises(TopicError, match="partitions"):
        create_topics(wider)


def test_local_cluster_reports_its_broker(kafka_cluster) -> None:
    from deploy.local import cluster

    assert cluster.is_up()
    assert cluster.up(1).bootstrap_servers == kafka_cluster.bootstrap_servers  # idempotent
    node = cluster.status()[0]
    assert (node.node_id, node.alive, node.listener) == (1, True, "127.0.0.1:9092")
