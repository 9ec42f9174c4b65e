"""Each recovery case of a task, on the real broker, read back `read_committed`.

A "crash" here abandons a `TaskRuntime` without committing or closing, exactly what `kill -9`
leaves behind: an open transaction on the broker and a producer that is never heard of again.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from typing import Any

import msgspec
import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from connectors.tasks import TaskRuntime, task_id_of
from connectors.transactions import TaskFenced
from flows.payments import PAYMENTS
from paystream import clients
from paystream.settings import Settings
from state.customers import CustomerTable
from tools.traffic import Traffic, recent_start_ts


def produce_traffic_records(settings: Settings, accounts: int, payments: int, seed: int = 3) -> CustomerTable:
    """Write generated traffic to the test topics; return the customer table it implies."""
    table = CustomerTable()
    producer = Producer(clients.producer_config(settings))
    start_ts = recent_start_ts(payments, int(time.time() * 1000))  # inside the event-time bounds
    for kind, key, value in Traffic(accounts=accounts, payments=payments, seed=seed, bad_ratio=0.02, start_ts=start_ts):
        if kind == "customers":
            table.apply(key, value)
            producer.produce(settings.topics.customers, value, key)
        else:
            producer.produce(settings.topics.payments, value, key)
        producer.poll(0)
    assert producer.flush(30) == 0
    return table


def read_committed(settings: Settings, topic: str) -> list[Any]:
    """Every record of `topic` a `read_committed` reader sees, to the end."""
    consumer = Consumer(clients.consumer_config(settings, f"reader-{uuid.uuid4().hex[:8]}",
                                                **{"enable.partition.eof": True}))
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, -2) for p in partitions])
    records, at_end = [], set()
    deadline = time.monotonic() + 60
    while len(at_end) < len(partitions) and time.monotonic() < deadline:
        for message in consumer.consume(1000, timeout=0.5):
            if message.error() is None:
                records.append(message)
            elif message.error().code() == KafkaError._PARTITION_EOF:
                at_end.add(message.partition())
    consumer.close()
    return records


def drain(task: TaskRuntime, quiet_seconds: float = 1.5, first_record_within: float = 15.0) -> int:
    """Feed everything currently readable by the task into it; return the record count.

    Waits up to `first_record_within` for the first fetch, then stops after `quiet_seconds`
    without a record.
    """
    seen = 0
    last = time.monotonic()
    while True:
        records = task.poll(2000)
        now = time.monotonic()
        if records:
            task.process(records)
            seen += len(records)
            last = now
        elif now - last > (quiet_seconds if seen else first_record_within):
            return seen
        else:
            time.sleep(0.02)


def payment_records_of(settings: Settings, partition: int) -> int:
    consumer = Consumer(clients.consumer_config(settings, f"count-{uuid.uuid4().hex[:8]}"))
    low, high = consumer.get_watermark_offsets(TopicPartition(settings.topics.payments, partition), timeout=10)
    consumer.close()
    return high - low


def decisions_by_payment(settings: Settings) -> dict[str, int]:
    counts: dict[str, int] = {}
    for message in read_committed(settings, settings.topics.decisions):
        payment_id = msgspec.json.decode(message.value())["payment_id"]
        counts[payment_id] = counts.get(payment_id, 0) + 1
    return counts


def snapshot_of(accounts: dict[str, Any]) -> bytes:
    return msgspec.msgpack.encode(dict(sorted(accounts.items())))


@pytest.fixture(params=["memory", "disk"])
def loaded(make_settings: Any, request: pytest.FixtureRequest) -> tuple[Settings, CustomerTable]:
    """Traffic on one partition; the tasks keep their state in memory, or on disk (`engine.store`)."""
    settings = make_settings(partitions=1, engine={"snapshot_every_epochs": 1_000_000, "store": request.param})
    table = produce_traffic_records(settings, accounts=200, payments=3000)
    return settings, table


def test_clean_restart_resumes_from_committed_offsets_with_identical_state(loaded: Any) -> None:
    settings, table = loaded
    task = TaskRuntime(settings, task_id_of(settings, 0), {"customers": table}, app=PAYMENTS).open()
    assert drain(task) == payment_records_of(settings, 0)
    task.commit(wait=True)
    while drain(task, first_record_within=2.0):  # the transfers' credits, visible once committed
        task.commit(wait=True)
    before = snapshot_of(task.store.contents())

    again = TaskRuntime(settings, task_id_of(settings, 0), {"customers": table}, app=PAYMENTS).open()
    assert snapshot_of(again.store.contents()) == before
    assert drain(again, first_record_within=3.0) == 0  # nothing is read twice
    assert max(decisions_by_payment(settings).values()) == 1


def test_crash_before_commit_leaves_nothing_visible_and_the_epoch_is_redone(loaded: Any) -> None:
    settings, table = loaded
    first = TaskRuntime(settings, task_id_of(settings, 0), {"customers": table}, app=PAYMENTS).open()
    drain(first)  # outputs sent inside an open transaction, never committed: the "kill -9"
    assert first.producer is not None and first.producer.in_transaction

    # the second owner fences the first and aborts its transaction
    second = TaskRuntime(settings, task_id_of(settings, 0), {"customers": table}, app=PAYMENTS).open()
    assert second.store.contents() == {}
    assert decisions_by_payment(settings) == {}  # the aborted outputs are invisible
    drain(second)
    second.commit(wait=True)
    decided = decisions_by_payment(settings)
    assert decided and max(decided.values()) == 1
    # the redo computes the same state
    assert snapshot_of(second.store.contents()) == snapshot_of(first.store.contents())


def test_crash_after_kafka_commit_before_local_snapshot_restores_from_changelog(loaded: Any) -> None:
    settings, table = loaded
    task = TaskRuntime(settings, task_id_of(settings, 0), {"customers": table}, app=PAYMENTS).open()
    drain(task)
    task.commit(wait=True)  # committed in Kafka; snapshot_every_epochs is huge, so no local snapshot exists
    assert not list(task.snapshots.directory.glob("*.snapshot")) if task.snapshots.directory.exists() else True

    restored = TaskRuntime(settings, task_id_of(settings, 0), {"customers": table}, app=PAYMENTS).open()
    assert snapshot_of(restored.store.contents()) == snapshot_of(task.store.contents())


def test_a_local_snapshot_plus_the_changelog_tail_equals_a_full_restore(make_settings: Any) -> None:
    settings = make_settings(partitions=1, engine={"snapshot_every_epochs": 1})
    table = produce_traffic_records(settings, accounts=100, payments=1500)
    task = TaskRuntime(settings, task_id_of(settings, 0), {"customers": table}, app=PAYMENTS).open()
    records = []
    while len(records) < 1000:
        records += task.poll(1000)
    task.process(records[:700])
    task.commit(wait=True)  # writes a snapshot at this changelog offset
    snapshot_offset = task.changelog_end
    task.process(records[700:])
    task.snapshots.save = lambda *a, **k: None  # type: ignore[method-assign]  # crash before the 2nd snapshot
    task.commit(wait=True)

    restored = TaskRuntime(settings, task_id_of(settings, 0), {"customers": table}, app=PAYMENTS).open()
    assert snapshot_offset < restored.changelog_end
    assert snapshot_of(restored.store.contents()) == snapshot_of(task.store.contents())


def test_a_snapshot_ahead_of_kafka_is_discarded(make_settings: Any) -> None:
    settings = make_settings(partitions=1, engine={"snapshot_every_epochs": 1_000_000})  # snapshots: memory only
    table = produce_traffic_records(settings, accounts=200, payments=3000)
    task = TaskRuntime(settings, task_id_of(settings, 0), {"customers": table}, app=PAYMENTS).open()
    drain(task)
    task.commit(wait=True)
    truth = snapshot_of(task.store.contents())
    task.snapshots.save({}, task.changelog_end + 1_000)  # a snapshot claiming more than Kafka has

    restored = TaskRuntime(settings, task_id_of(settings, 0), {"customers": table}, app=PAYMENTS).open()
    assert snapshot_of(restored.store.contents()) == truth
    assert not list(task.snapshots.directory.glob(f"*.{task.changelog_end + 1_000}.snapshot"))


def test_crash_during_changelog_restore_is_harmless(loaded: Any) -> None:
    settings, table = loaded
    task = TaskRuntime(settings, task_id_of(settings, 0), {"customers": table}, app=PAYMENTS).open()
    drain(task)
    task.commit(wait=True)
    truth = snapshot_of(task.store.contents())

    from tools.runner import settings_environment

    restorer = subprocess.Popen(
        [sys.executable, "-c",
         "from paystream import settings; from connectors.tasks import TaskRuntime, task_id_of\n"
         "from flows.payments import PAYMENTS\n"
         "s = settings.load()\n"
         "while True: TaskRuntime(s, task_id_of(s, 0), {'customers': {}}, app=PAYMENTS).open()"],
        env=settings_environment(settings),
    )
    time.sleep(3.0)
    restorer.kill()  # kill -9 somewhere inside fencing or restoring
    restorer.wait()

    restored = TaskRuntime(settings, task_id_of(settings, 0), {"customers": table}, app=PAYMENTS).open()
    assert snapshot_of(restored.store.contents()) == truth


def test_a_zombie_is_fenced_and_writes_nothing(loaded: Any) -> None:
    settings, table = loaded
    zombie = TaskRuntime(settings, task_id_of(settings, 0), {"customers": table}, app=PAYMENTS).open()
    drain(zombie)
    successor = TaskRuntime(settings, task_id_of(settings, 0), {"customers": table}, app=PAYMENTS).open()

    with pytest.raises(TaskFenced):
        zombie.commit(wait=True)
    assert decisions_by_payment(settings) == {}

    drain(successor)
    successor.commit(wait=True)
    decided = decisions_by_payment(settings)
    assert decided and max(decided.values()) == 1


def test_a_disk_store_restores_only_the_changelog_after_its_label(make_settings: Any) -> None:
    settings = make_settings(partitions=1, engine={"snapshot_every_epochs": 1, "store": "disk"})
    table = produce_traffic_records(settings, accounts=100, payments=1500)
    task = TaskRuntime(settings, task_id_of(settings, 0), {"customers": table}, app=PAYMENTS).open()
    records = []
    while len(records) < 1000:
        records += task.poll(1000)
    task.process(records[:700])
    task.commit(wait=True)
    task.process(records[700:])
    task.commit(wait=True)  # labelled with the changelog's end before this commit's records
    truth = snapshot_of(task.store.contents())
    label = task.disk.label if task.disk is not None else -1
    end = task.changelog_end
    task.close()

    restored = TaskRuntime(settings, task_id_of(settings, 0), {"customers": table}, app=PAYMENTS).open()
    assert 0 < label and restored.restored_records == restored.changelog_end - label  # only the tail
    assert restored.changelog_end >= end
    assert snapshot_of(restored.store.contents()) == truth
    restored.close()


def test_a_disk_store_labelled_ahead_of_kafka_is_wiped_and_restored(make_settings: Any) -> None:
    settings = make_settings(partitions=1, engine={"store": "disk"})
    table = produce_traffic_records(settings, accounts=100, payments=1500)
    task = TaskRuntime(settings, task_id_of(settings, 0), {"customers": table}, app=PAYMENTS).open()
    drain(task)
    task.commit(wait=True)
    truth = snapshot_of(task.store.contents())
    assert task.disk is not None
    task.disk.commit([(b"GHOST", b"not committed anywhere")], task.changelog_end + 1_000)  # claims more than Kafka
    task.close()

    restored = TaskRuntime(settings, task_id_of(settings, 0), {"customers": table}, app=PAYMENTS).open()
    assert snapshot_of(restored.store.contents()) == truth
    restored.close()
