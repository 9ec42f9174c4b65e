"""Configuration of every Kafka client paystream makes, in one place.

All producers partition with `murmur2_random`, Kafka's Java default, so that a key lands on
the same partition whoever wrote it (paystream, the generator, a Java service): the engine's
tasks rely on `payments` and the internal credits topic being co-partitioned by account.
"""

from __future__ import annotations

from typing import Any

from paystream.settings import Settings


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
