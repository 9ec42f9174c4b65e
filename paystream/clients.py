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


class SetupError(RuntimeError):
    """Kafka or its topics are not as the settings say; the message is one line that names what is
    wrong and how to fix it (the CLI and the flow print it without a traceback)."""


# librdkafka's error names for credentials and certificates a cluster refused
_REFUSED = {"_AUTHENTICATION": "authentication failed", "_SSL": "TLS failed", "SASL_AUTHENTICATION_FAILED":
            "authentication failed", "TOPIC_AUTHORIZATION_FAILED": "not authorized",
            "CLUSTER_AUTHORIZATION_FAILED": "not authorized"}


def require_kafka(settings: Settings, timeout: float = 5.0) -> set[str]:
    """The cluster's topic names, or a `SetupError` within about `timeout` seconds: nothing answers
    at the bootstrap servers, or it refused our credentials or certificates."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    refused: list[str] = []

    def on_error(error: Any) -> None:
        if error.name() in _REFUSED:
            refused.append(f"{_REFUSED[error.name()]}: {error.str()}")

    servers = settings.kafka.bootstrap_servers
    try:
        admin = AdminClient(admin_config(settings, error_cb=on_error))
    except KafkaException as error:  # e.g. an ssl.ca.location that holds no certificate
        raise SetupError(f"cannot make a Kafka client for {servers}: {error.args[0].str()}; check kafka.client"
                         ) from None
    try:
        metadata = admin.list_topics(timeout=timeout)
    except KafkaException as error:
        admin.poll(0.5)  # serve the error callbacks: an authentication or TLS failure arrives there
        if refused:
            raise SetupError(f"Kafka at {servers} refused paystream: {refused[0]}; check kafka.client "
                             f"(security.protocol, sasl.username/password, ssl.ca.location)") from None
        raise SetupError(f"no Kafka answers at {servers} ({error.args[0].str()}): start the local one with "
                         f"`paystream kafka up`, or set kafka.bootstrap_servers (and kafka.client's "
                         f"security.protocol, if that cluster is secured)") from None
    return set(metadata.topics)


def require_topics(settings: Settings, names: list[str] | tuple[str, ...], timeout: float = 5.0) -> None:
    """`require_kafka`, then a `SetupError` naming the topics of `names` that do not exist."""
    deadline = time.monotonic() + timeout
    while True:
        existing = require_kafka(settings, timeout)
        missing = [name for name in names if name not in existing]
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(0.5)  # a topic just created may reach this broker's metadata a moment later
    if missing:
        shown = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
        raise SetupError(f"{len(missing)} topic(s) missing at {settings.kafka.bootstrap_servers}: {shown}; "
                         f"create them with `paystream topics create`")
