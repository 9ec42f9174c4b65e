"""The benchmark's workload on Kafka: fresh topics per run, and a fast loader of simple payments.

Every run gets topics named `bench-<run_id>-<system>-payments|decisions|balances`, created with
12 partitions (balances compacted) and deleted at the end, together with whatever internal topics
a peer made (Kafka Streams changelogs, Quix changelogs): their names contain the run id too.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from paystream.clients import producer_config
from paystream.settings import Settings
from tools.topics import delete_topics
from tools.traffic import simple_payments

PARTITIONS = 12
LEADER_WAIT_S = 30.0


@dataclass(frozen=True)
class BenchTopics:
    """The three topics of one system's run, and the consumer group / app id it uses."""

    payments: str
    decisions: str
    balances: str
    group: str

    @classmethod
    def named(cls, run_id: str, system: str) -> BenchTopics:
        prefix = f"bench-{run_id}-{system}"
        return cls(f"{prefix}-payments", f"{prefix}-decisions", f"{prefix}-balances", f"{prefix}-app")


def admin_client(settings: Settings) -> AdminClient:
    return AdminClient({"bootstrap.servers": settings.kafka.bootstrap_servers, **settings.kafka.client})


def create_topics(settings: Settings, topics: BenchTopics, partitions: int = PARTITIONS) -> None:
    """Create the run's three topics and wait until every partition has a leader."""
    admin = admin_client(settings)
    new = [
        NewTopic(topics.payments, partitions, 1),
        NewTopic(topics.decisions, partitions, 1),
        NewTopic(topics.balances, partitions, 1, config={"cleanup.policy": "compact"}),
    ]
    for future in admin.create_topics(new, request_timeout=30).values():
        try:
            future.result()
        except KafkaException as error:  # the paystream hook may have created them already
            if error.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    names = [topics.payments, topics.decisions, topics.balances]
    deadline = time.monotonic() + LEADER_WAIT_S
    while True:
        listed = admin.list_topics(timeout=10).topics
        if all(
            name in listed and listed[name].error is None and len(listed[name].partitions) == partitions
            and all(p.leader >= 0 and p.error is None for p in listed[name].partitions.values())
            for name in names
        ):
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"no leaders after {LEADER_WAIT_S:.0f} s for {names}")
        time.sleep(0.1)
    wait_for_offsets(settings, names, partitions, deadline)


def wait_for_offsets(settings: Settings, names: list[str], partitions: int, deadline: float) -> None:
    """Wait until every partition answers an offset query: metadata names a leader a moment before
    the leader serves (NOT_LEADER_FOR_PARTITION), and a system started then may fail on it."""
    consumer = Consumer({"bootstrap.servers": settings.kafka.bootstrap_servers, **settings.kafka.client,
                         "group.id": "bench-offsets-probe"})
    try:
        for name in names:
            for partition in range(partitions):
                while True:
                    try:
                        consumer.get_watermark_offsets(TopicPartition(name, partition), timeout=5)
                        break
                    except KafkaException:
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.1)
    finally:
        consumer.close()


def delete_run_topics(settings: Settings, run_id: str) -> list[str]:
    """Delete every topic whose name contains `run_id` (ours and the peers' internal ones)."""
    listed = admin_client(settings).list_topics(timeout=10).topics
    names = sorted(name for name in listed if run_id in name)
    delete_topics(settings, names, wait=False)
    return names


def produce_all(producer: Producer, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    """Produce pre-encoded (key, value) records as fast as librdkafka takes them; flush once."""
    produce, poll = producer.produce, producer.poll
    for n, (key, value) in enumerate(records):
        while True:
            try:
                produce(topic, value, key)
                break
            except BufferError:
                poll(0.01)
        if n % 10_000 == 0:
            poll(0)
    remaining = producer.flush(120)
    if remaining:
        raise RuntimeError(f"{remaining} payments not delivered to {topic}")


def load_payments(settings: Settings, topic: str, accounts: int, payments: int, seed: int = 42) -> float:
    """Write `payments` simple-variant payments over `accounts` accounts to `topic`; returns records/s."""
    records = [(key, value) for _kind, key, value in simple_payments(accounts, payments, seed) if key and value]
    producer = Producer(producer_config(settings))
    started = time.monotonic()
    produce_all(producer, topic, records)
    return len(records) / (time.monotonic() - started)
