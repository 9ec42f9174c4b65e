"""Restoring a task's store from its changelog partition (like Kafka's `StoreChangelogReader`).

Reads partition p of the changelog `read_committed` from `start_offset` to its end (the end is
known by the partition-EOF event, which a `read_committed` fetch reports at the last stable
offset, so aborted tails and control markers are handled), latest record per key wins, on top
of a snapshot's records if there is one; the records are folded into the store's values by its
codec (`state.codec.Codec.apply`: format versions checked, a value written as several records
put back together). Progress and speed (keys/s) go to the log.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import msgspec
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, TopicPartition

from paystream import clients, logs, metrics
from paystream.settings import Settings
from state.codec import META_PREFIX, Codec, configure

# Changelog keys starting with `META_PREFIX` are the task's own records (e.g. its input
# positions), never a store's: a store's keys are valid UTF-8, which never holds 0xFF.
__all__ = ["META_PREFIX", "RestoreResult", "read_partition_to_end", "restore_store", "watermarks"]


class RestoreResult(msgspec.Struct, frozen=True):
    records: int
    accounts: int  # values (keys) the store holds once restored
    next_offset: int
    seconds: float
    meta: dict[bytes, bytes] = {}  # the latest value of each `META_PREFIX` key
    image: dict[bytes, bytes] = {}  # the latest value of every live key: the next snapshot's start

    @property
    def keys_per_second(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0


def watermarks(consumer: Consumer, partition: TopicPartition, timeout: float = 60.0) -> tuple[int, int]:
    """(low, high) offsets of a partition, retried while the cluster settles (right after a topic
    is created, or while a leader moves, brokers answer NOT_LEADER_FOR_PARTITION for a while)."""
    return clients.while_settling(lambda: consumer.get_watermark_offsets(partition, timeout=10, cached=False), timeout)


def read_partition_to_end(
    settings: Settings,
    topic: str,
    partition: int,
    start_offset: int,
    on_batch: Callable[[list[Message]], None],
    batch_size: int = 10_000,
) -> int:
    """Feed every committed record of `topic`/`partition` from `start_offset` to its end to `on_batch`.

    Returns the offset after the last record read (or `start_offset` if none).
    """
    consumer = Consumer(
        clients.consumer_config(settings, f"{settings.engine.app_id}-restore-{uuid.uuid4().hex[:8]}",
                                **{"enable.partition.eof": True, "fetch.max.bytes": 64 * 1024 * 1024,
                                   "max.partition.fetch.bytes": 16 * 1024 * 1024})
    )
    next_offset = start_offset
    try:
        low, high = watermarks(consumer, TopicPartition(topic, partition))
        if high <= max(low, start_offset):
            return start_offset
        consumer.assign([TopicPartition(topic, partition, start_offset if start_offset >= 0 else OFFSET_BEGINNING)])
        while True:
            messages = consumer.consume(batch_size, timeout=0.05)
            batch: list[Message] = []
            done = False
            for message in messages:
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        done = True
                        continue
                    raise KafkaException(error)
                batch.append(message)
                next_offset = message.offset() + 1  # type: ignore[operator]  # typed Optional; a fetched record has one
            if batch:
                on_batch(batch)
            if done:
                return next_offset
    finally:
        consumer.close()


def restore_store(
    settings: Settings, topic: str, task_id: str, partition: int, start_offset: int, data: dict[str, Any],
    codec: Codec, snapshot: dict[bytes, bytes] | None = None,
) -> RestoreResult:
    """Fold the tail of changelog `topic`'s partition from `start_offset` (on top of a `snapshot`'s
    records) into a store's values `data`, decoded by the store's `codec`."""
    log = logs.get("restore", task=task_id)
    configure(settings.engine.changelog_record_warn_bytes)  # the alarm of the records it writes next
    started = time.perf_counter()
    seen = 0
    last_report = started
    # An uncompacted changelog holds one record per account per commit that changed it:
    # keep only the latest raw value per key while reading, and decode each value once.
    latest: dict[bytes, bytes | None] = dict(snapshot) if snapshot else {}
    progress = metrics.RESTORED_RECORDS.labels(topic)

    def fold(batch: list[Message]) -> None:
        nonlocal seen, last_report
        # `key()` is typed Optional: a record of the (compacted) changelog always has one
        latest.update([(message.key(), message.value()) for message in batch])  # type: ignore[misc]
        seen += len(batch)
        progress.inc(len(batch))
        now = time.perf_counter()
        if now - last_report >= 2.0:
            log.info("restoring", records=seen, keys_per_s=int(seen / (now - started)))
            last_report = now

    next_offset = read_partition_to_end(settings, topic, partition, start_offset, fold)
    image = {key: value for key, value in latest.items() if value is not None}
    meta = {key: image[key] for key in image if key.startswith(META_PREFIX)}
    for key in meta:
        del latest[key]
    codec.apply(latest, data)  # in bulk: one C call decodes 50,000 values at a time
    seconds = time.perf_counter() - started
    metrics.RESTORE_SECONDS.labels(topic).observe(seconds)
    result = RestoreResult(seen, len(data), next_offset, seconds, meta, image)
    log.info("restored", records=seen, accounts=len(data), from_offset=start_offset,
             next_offset=next_offset, seconds=round(seconds, 3), keys_per_s=int(result.keys_per_second))
    return result
