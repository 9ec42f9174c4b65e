"""Reading whole topics back from Kafka, `read_committed`, from the beginning to their current end.

The end of each partition is fixed before reading starts: its high watermark as a
`read_committed` consumer sees it (the last stable offset), so a transaction still open is
left out and a reader is never stuck behind one. A committed transaction ends in a control
marker that is never delivered, so "done" is `position >= end` (or end-of-partition), not
"the last record's offset + 1 == end".

The auditor shares no code with the engine: where to read (`Source`: the Kafka connection and
the topic names) is taken from the operator's settings as plain data (`source_of`), and the
reader's own client configuration is written here.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

import msgspec
from confluent_kafka import (
    OFFSET_BEGINNING,
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaError,
    KafkaException,
    TopicPartition,
)

from verify.audit import Snapshot
from verify.validation import InputRecord


class Source(msgspec.Struct, frozen=True):
    """Where the auditor reads: librdkafka connection settings (`bootstrap.servers` and any
    security settings) and the topic names by role (`customers`, `payments`, `decisions`, ...)."""

    connection: dict[str, Any]
    topics: dict[str, str]


def source_of(configured: Any) -> Source:
    """The `Source` of a settings object with `kafka` (`bootstrap_servers`, `client`) and `topics`
    sections, read as data (any Struct or dataclass of that shape), or a `Source` as is."""
    if isinstance(configured, Source):
        return configured
    kafka = msgspec.to_builtins(configured.kafka)
    connection = {"bootstrap.servers": kafka["bootstrap_servers"], **kafka.get("client", {})}
    return Source(connection, msgspec.to_builtins(configured.topics))


def _reader(configured: Any) -> Consumer:
    """A `read_committed` consumer in a fresh group that is only ever `assign()`ed, so it commits
    and joins nothing."""
    return Consumer({**source_of(configured).connection, "group.id": f"paystream-verify-{uuid.uuid4().hex[:12]}",
                     "isolation.level": "read_committed", "enable.auto.commit": False,
                     "enable.auto.offset.store": False, "auto.offset.reset": "earliest",
                     "enable.partition.eof": True, "fetch.queue.backoff.ms": 0})


def partition_count(configured: Any, topic: str) -> int:
    """How many partitions `topic` has (raises if it does not exist)."""
    consumer = _reader(configured)
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics[topic]
        if metadata.error is not None:
            raise KafkaException(metadata.error)
        return len(metadata.partitions)
    finally:
        consumer.close()


def read_topics(configured: Any, topics: Iterable[str], timeout_s: float = 600.0) -> dict[str, list[InputRecord]]:
    """Every committed record of `topics` up to the end each partition had when reading began,
    per topic in (partition, offset) order. `configured`: a `Source` or the settings (`source_of`)."""
    consumer = _reader(configured)
    try:
        ends: dict[tuple[str, int], int] = {}
        for topic in topics:
            metadata = consumer.list_topics(topic, timeout=10).topics[topic]
            if metadata.error is not None:
                raise KafkaException(metadata.error)
            for partition in metadata.partitions:
                # with isolation.level=read_committed this is the last stable offset
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
                if high > low:
                    ends[(topic, partition)] = high
        records: dict[str, list[InputRecord]] = {topic: [] for topic in topics}
        pending = dict(ends)
        if pending:
            consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t, p in pending])
        while pending:
            batch = consumer.consume(10_000, timeout=1.0)
            for message in batch:
                topic, partition = message.topic(), message.partition()
                end = pending.get((topic, partition))
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        pending.pop((topic, partition), None)
                        continue
                    raise KafkaException(error)
                if end is None or message.offset() >= end:
                    continue  # past the end fixed at the start: a later transaction
                headers = message.headers()
                kind, stamp = message.timestamp()
                records[topic].append(InputRecord(topic, partition, message.offset(), message.key(), message.value(),
                                                  tuple(headers) if headers else (),
                                                  stamp if kind != TIMESTAMP_NOT_AVAILABLE else None))
                if message.offset() + 1 >= end:
                    pending.pop((topic, partition), None)
            if not batch and pending:
                _drop_finished(consumer, pending)
        for topic_records in records.values():
            topic_records.sort(key=lambda r: (r.partition, r.offset))
        return records
    finally:
        consumer.close()


def _drop_finished(consumer: Consumer, pending: dict[tuple[str, int], int]) -> None:
    """On an idle poll: a partition whose position passed its end (over trailing control markers) is done."""
    positions = consumer.position([TopicPartition(t, p) for t, p in pending])
    for position in positions:
        key = (position.topic, position.partition)
        if position.offset >= 0 and position.offset >= pending.get(key, 0):
            pending.pop(key, None)


def read_snapshot(configured: Any) -> Snapshot:
    """The inputs and every output topic, read as `paystream verify` audits them.

    `configured`: a `Source` or the settings (`source_of`)."""
    source = source_of(configured)
    t = source.topics
    roles = ("customers", "payments", "decisions", "ledger", "balances", "alerts", "completed", "dlq")
    rules = t.get("rules")  # the published rule changes (absent from an older deployment's topics)
    records = read_topics(source, [t[role] for role in roles] + ([rules] if rules else []))
    return Snapshot(
        customers=records[t["customers"]], payments=records[t["payments"]],
        payment_partitions=partition_count(source, t["payments"]),
        decisions=records[t["decisions"]], ledger=records[t["ledger"]], balances=records[t["balances"]],
        alerts=records[t["alerts"]], completed=records[t["completed"]], dlq=records[t["dlq"]],
        rules=records[rules] if rules else [],
    )
