"""Configuration of every Kafka client paystream makes, in one place.

All producers partition with `murmur2_random`, Kafka's Java default, so that a key lands on
the same partition whoever wrote it (paystream, the generator, a Java service): the engine's
tasks rely on `payments` and the internal credits topic being co-partitioned by account.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from paystream.settings import Settings

T = TypeVar("T")


def _base(settings: Settings) -> dict[str, Any]:
    return {"bootstrap.servers": settings.kafka.bootstrap_servers, **settings.kafka.client}


def producer_config(settings: Settings, **extra: Any) -> dict[str, Any]:
    """An idempotent, `acks=all` producer that batches (never flush per record)."""
    return {
        **_base(settings),
        "enable.idempotence": True,
        "acks": "all",
        "partitioner": "murmur2_random",
        "linger.ms": 5,
        "batch.num.messages": 10_000,
        "queue.buffering.max.messages": 1_000_000,
        "queue.buffering.max.kbytes": 1_048_576,
        "compression.type": "lz4",
        **extra,
    }


def consumer_config(settings: Settings, group: str, **extra: Any) -> dict[str, Any]:
    """A `read_committed` consumer that never auto-commits; `fetch.queue.backoff.ms=0` doubles Python throughput."""
    return {
        **_base(settings),
        "group.id": group,
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "fetch.queue.backoff.ms": 0,
        "enable.partition.eof": False,
        **extra,
    }


def admin_config(settings: Settings, **extra: Any) -> dict[str, Any]:
    """An admin client (topic creation and inspection) for the configured cluster."""
    return {**_base(settings), **extra}


_SETTLING = {"NOT_COORDINATOR", "COORDINATOR_LOAD_IN_PROGRESS", "COORDINATOR_NOT_AVAILABLE",
             "NOT_LEADER_FOR_PARTITION", "LEADER_NOT_AVAILABLE", "UNKNOWN_TOPIC_OR_PART", "_TIMED_OUT",
             "_TRANSPORT", "REQUEST_TIMED_OUT", "UNSTABLE_OFFSET_COMMIT"}


def while_settling(call: Callable[[], T], timeout: float = 60.0) -> T:
    """`call()`, retried while the cluster settles (a fresh broker loading its group coordinator,
    a partition without a leader yet): errors a client should wait out, not die of."""
    from confluent_kafka import KafkaException

    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except KafkaException as error:
            kafka_error = error.args[0]
            name = kafka_error.name() if hasattr(kafka_error, "name") else ""
            retriable = name in _SETTLING or (hasattr(kafka_error, "retriable") and kafka_error.retriable())
            if not retriable or time.monotonic() > deadline:
                raise
            time.sleep(0.2)
