"""Reading whole topics back from Kafka, `read_committed`, from the beginning to their current end.

The end of each partition is fixed before reading starts: its high watermark as a
`read_committed` consumer sees it (the last stable offset), so a transaction still open is
left out and a reader is never stuck behind one. A committed transaction ends in a control
marker that is never delivered, so "done" is `position >= end` (or end-of-partition), not
"the last record's offset + 1 == end".
"""

from __future__ import annotations

import uuid
from typing import Iterable

from confluent_kafka import OFFSET_BEGINNING, TIMESTAMP_NOT_AVAILABLE, Consumer, KafkaError, KafkaException, TopicPartition

from paystream import logs
from paystream.clients import consumer_config
from paystream.settings import Settings
from verify.audit import Snapshot
from verify.validation import InputRecord

log = logs.get("verify.readback")


def _reader(settings: Settings) -> Consumer:
    """A consumer in a fresh group that is only ever `assign()`ed, so it commits and joins nothing."""
    return Consumer(consumer_config(settings, group=f"paystream-verify-{uuid.uuid4().hex[:12]}",
                                    **{"enable.partition.eof": True}))


def partition_count(settings: Settings, topic: str) -> int:
    """How many partitions `topic` has (raises if it does not exist)."""
    consumer = _reader(settings)
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics[topic]
        if metadata.error is not None:
            raise KafkaException(metadata.error)
        return len(metadata.partitions)
    finally:
        consumer.close()


def read_topics(settings: Settings, topics: Iterable[str], timeout_s: float = 600.0) -> dict[str, list[InputRecord]]:
    """Every committed record of `topics` up to the end each partition had when reading began,
    per topic in (partition, offset) order."""
    consumer = _reader(settings)
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


def read_snapshot(settings: Settings) -> Snapshot:
    """The inputs and every output topic of `settings`, read as `paystream verify` audits them."""
    t = settings.topics
    names = [t.customers, t.payments, t.decisions, t.ledger, t.balances, t.alerts, t.completed, t.dlq]
    records = read_topics(settings, names)
    return Snapshot(
        customers=records[t.customers], payments=records[t.payments],
        payment_partitions=partition_count(settings, t.payments),
        decisions=records[t.decisions], ledger=records[t.ledger], balances=records[t.balances],
        alerts=records[t.alerts], completed=records[t.completed], dlq=records[t.dlq],
    )
