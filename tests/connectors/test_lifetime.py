"""Hazards of a long-lived deployment, each provoked on the real broker and read back
`read_committed` by the independent auditor (see docs/LIFETIME.md).

Each test writes crafted records to the input topics, runs `flows.payments:flow` in its own
process until every input is committed, and checks the outputs and the audit.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import msgspec

from flows.payments import PAYMENTS
from paystream import clients
from paystream.settings import Settings
from tests.connectors.test_recovery import read_committed
from tests.operators.builders import customer
from tools.runner import FlowProcesses, wait_until_caught_up
from verify.audit import audit
from verify.geo import distance_km
from verify.readback import read_snapshot

MINUTE = 60_000


def produce(settings: Settings, commands: list[tuple[dict[str, Any], int | None]],
            customers: tuple[str, ...] = ("A",)) -> None:
    """Customer rows for `customers`, then each command with its Kafka timestamp (None: the producer's clock)."""
    from confluent_kafka import Producer

    producer = Producer(clients.producer_config(settings))
    for account in customers:
        producer.produce(settings.topics.customers, msgspec.json.encode(customer(account)), account.encode())
    assert producer.flush(30) == 0
    for body, timestamp in commands:
        value = json.dumps({"v": 1, "currency": "EUR", **body}).encode()
        if timestamp is None:
            producer.produce(settings.topics.payments, value, body["account"].encode())
        else:
            producer.produce(settings.topics.payments, value, body["account"].encode(), timestamp=timestamp)
    assert producer.flush(30) == 0


def run_flow(settings: Settings, payments: int, log_dir: Path) -> None:
    procs = FlowProcesses(settings, 1, log_dir=log_dir)
    procs.start()
    try:
        wait_until_caught_up(settings, payments, timeout=120, procs=procs, progress=False)
    finally:
        procs.stop()


def outputs(settings: Settings, topic: str) -> list[dict[str, Any]]:
    return [json.loads(message.value()) for message in read_committed(settings, topic)]


def dlq_reasons(settings: Settings) -> list[str]:
    return [dict(message.headers())["dlq.reason"].decode() for message in read_committed(settings, settings.topics.dlq)]


def assert_audit_green(settings: Settings) -> None:
    result = audit(read_snapshot(settings), settings.rules, distance_km)
    assert result.ok, result.table()


def test_a_producer_clock_in_microseconds_is_dead_lettered_and_a_resent_deposit_stays_a_duplicate(
        make_settings: Any, tmp_path: Path) -> None:
    """Before: the command in microseconds was approved, moved the account's event time ~55,000
    years ahead, and the re-sent deposit was approved a second time (posted 500 -> 1,000)."""
    settings = make_settings(partitions=1)
    now = int(time.time() * 1000)
    produce(settings, [
        ({"type": "deposit", "payment_id": "d1", "account": "A", "amount": 500, "ts": now}, None),
        ({"type": "deposit", "payment_id": "micro", "account": "A", "amount": 7, "ts": now * 1000}, None),
        ({"type": "deposit", "payment_id": "d1", "account": "A", "amount": 500, "ts": now}, None),
    ])

    run_flow(settings, 3, tmp_path / "logs")

    assert [d["payment_id"] for d in outputs(settings, settings.topics.decisions)] == ["d1"]
    assert dlq_reasons(settings) == ["ts_out_of_range"]
    assert outputs(settings, settings.topics.balances)[-1]["posted"] == 500
    assert_audit_green(settings)


def test_a_resent_authorization_past_the_horizon_cannot_be_captured_twice(make_settings: Any, tmp_path: Path) -> None:
    """Before: the re-sent `authorize` (its original record replayed, timestamp and all) reopened
    the captured authorization past the horizon, and a second capture charged the card again."""
    settings = make_settings(partitions=1, rules={"duplicate": {"horizon_ms": MINUTE},
                                                  "event_time": {"max_skew_ms": 1_000, "max_lateness_ms": 10_000}})
    t = int(time.time() * 1000) - 10 * MINUTE
    later = t + 2 * MINUTE  # past the one-minute horizon
    authorize = {"type": "authorize", "payment_id": "a1", "account": "A", "amount": 400, "ts": t, "country": "FR"}
    produce(settings, [
        ({"type": "deposit", "payment_id": "d0", "account": "A", "amount": 10_000, "ts": t}, t),
        (authorize, t),
        ({"type": "capture", "payment_id": "c1", "account": "A", "amount": 400, "ts": t + 100, "auth_id": "a1"},
         t + 100),
        ({"type": "deposit", "payment_id": "d1", "account": "A", "amount": 5, "ts": later}, later),
        (authorize, t),
        ({"type": "capture", "payment_id": "c2", "account": "A", "amount": 400, "ts": later + 100, "auth_id": "a1"},
         later + 100),
    ])

    run_flow(settings, 6, tmp_path / "logs")

    decided = [(d["payment_id"], d["decision"], d["reasons"]) for d in outputs(settings, settings.topics.decisions)]
    # the replayed authorize is older than the horizon (RULES.md `outside_horizon`), and c1 closed a1
    # more than a horizon before c2, so a1 is forgotten (`unknown_authorization`): no second capture
    assert decided[-2:] == [("a1", "declined", ["outside_horizon"]), ("c2", "declined", ["unknown_authorization"])]
    last = outputs(settings, settings.topics.balances)[-1]
    assert (last["posted"], last["held"]) == (10_000 - 400 + 5, 0)
    assert_audit_green(settings)


# -- committed offsets that Kafka forgets, credits that vanish, partition counts -------------------


def task_settings(make_settings: Any, **engine: Any) -> Settings:
    return make_settings(partitions=2, engine={"snapshot_every_epochs": 1_000_000, **engine})


def committed_offsets(settings: Settings) -> dict[tuple[str, int], int]:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(clients.consumer_config(settings, settings.consumer_group))
    inputs = [TopicPartition(topic, p)
              for topic in (settings.topics.payments, settings.credits_topic) for p in range(2)]
    found = {(tp.topic, tp.partition): tp.offset for tp in consumer.committed(inputs, timeout=10)}
    consumer.close()
    return found


def delete_group(settings: Settings) -> None:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(clients.admin_config(settings))
    for future in admin.delete_consumer_groups([settings.consumer_group], request_timeout=30).values():
        future.result()


def transfers_between_partitions(settings: Settings, count: int) -> list[tuple[dict[str, Any], int | None]]:
    """Deposits to two accounts on different partitions, then `count` transfers between them."""
    from paystream.partitioning import partition_for

    names = [f"ACC{n:05d}" for n in range(50)]
    first = names[0]
    other = next(name for name in names if partition_for(name.encode(), 2) != partition_for(first.encode(), 2))
    now = int(time.time() * 1000)
    commands: list[tuple[dict[str, Any], int | None]] = [
        ({"type": "deposit", "payment_id": "fund", "account": first, "amount": 1_000_000, "ts": now}, None)]
    commands += [({"type": "transfer", "payment_id": f"t{n}", "account": first, "amount": 10, "ts": now,
                   "to_account": other}, None) for n in range(count)]
    return commands


def test_every_commit_carries_every_owned_partition_so_an_idle_one_never_expires(
        make_settings: Any, tmp_path: Path) -> None:
    """Before: a task committed only the partitions it read in the epoch, so an idle partition's
    offset was never committed (and expired 7 days after its last commit)."""
    settings = task_settings(make_settings)
    now = int(time.time() * 1000)
    produce(settings, [({"type": "deposit", "payment_id": "d1", "account": "A", "amount": 5, "ts": now}, None)])
    procs = FlowProcesses(settings, 1, log_dir=tmp_path / "logs")
    procs.start()
    try:
        wait_until_caught_up(settings, 1, timeout=120, procs=procs, progress=False)
        deadline = time.monotonic() + 30  # a task commits every position right after it opens
        while True:
            offsets = committed_offsets(settings)
            if all(offset >= 0 for offset in offsets.values()):
                break
            assert time.monotonic() < deadline, f"idle partitions never committed: {offsets}"
            time.sleep(0.2)
    finally:
        procs.stop()


def test_a_deleted_group_resumes_from_the_changelog_positions_without_double_credits(
        make_settings: Any, tmp_path: Path) -> None:
    """Before: with the group's offsets gone (deleted by a clean-up script, or expired), every
    partition restarted from the beginning on top of restored state: credits applied twice."""
    settings = task_settings(make_settings)
    produce(settings, transfers_between_partitions(settings, 40), customers=tuple(f"ACC{n:05d}" for n in range(50)))
    run_flow(settings, 41, tmp_path / "first")
    delete_group(settings)
    assert all(offset < 0 for offset in committed_offsets(settings).values())

    run_flow(settings, 41, tmp_path / "second")

    assert_audit_green(settings)  # one decision per payment, one credit per transfer, balances agree
    assert all(offset >= 0 for offset in committed_offsets(settings).values())


def test_a_group_offset_ahead_of_the_state_refuses_to_start(make_settings: Any) -> None:
    from confluent_kafka import Consumer, TopicPartition

    from connectors.tasks import TaskRuntime, TaskStateError, task_id_of
    from tests.connectors.test_recovery import drain

    settings = task_settings(make_settings)
    now = int(time.time() * 1000)
    produce(settings, [({"type": "deposit", "payment_id": f"d{n}", "account": "A", "amount": 5, "ts": now}, None)
                       for n in range(5)])
    from paystream.partitioning import partition_for

    partition = partition_for(b"A", 2)
    task = TaskRuntime(settings, task_id_of(settings, partition), {"customers": {}}, app=PAYMENTS).open()
    drain(task)
    task.commit(wait=True)
    task.close()
    # someone moves the group past what the state reflects (or the changelog was recreated)
    consumer = Consumer(clients.consumer_config(settings, settings.consumer_group))
    consumer.commit(offsets=[TopicPartition(settings.topics.payments, partition, 5 + 3)], asynchronous=False)
    consumer.close()

    try:
        TaskRuntime(settings, task_id_of(settings, partition), {"customers": {}}, app=PAYMENTS).open()
    except TaskStateError as error:
        assert "ahead of the position 5" in str(error)
    else:
        raise AssertionError("the task opened on a group offset ahead of its state")


def test_credits_are_kept_until_consumed_and_a_deleted_position_is_an_error_not_a_jump(
        make_settings: Any, tmp_path: Path) -> None:
    """Before: credits were deleted after 7 days whether consumed or not, and a task whose
    position had been deleted silently jumped to the earliest record left."""
    from confluent_kafka import TopicPartition
    from confluent_kafka.admin import AdminClient

    from connectors.tasks import TaskRuntime, TaskStateError, task_id_of
    from tools.topics import describe_topics

    settings = task_settings(make_settings, credits_purge_interval_ms=0)
    retention = {info.name: info.retention_ms for info in describe_topics(settings)}
    assert retention[settings.credits_topic] == -1
    produce(settings, transfers_between_partitions(settings, 30), customers=tuple(f"ACC{n:05d}" for n in range(50)))
    run_flow(settings, 31, tmp_path / "logs")
    # consumed credits were deleted after their commit: the recipient's credits partition starts later
    admin = AdminClient(clients.admin_config(settings))
    from confluent_kafka import Consumer

    probe = Consumer(clients.consumer_config(settings, "probe"))
    lows = [probe.get_watermark_offsets(TopicPartition(settings.credits_topic, p), timeout=10, cached=False)[0]
            for p in range(2)]
    assert max(lows) > 0, lows

    # records deleted under a task's committed position: an error naming the partition, never a jump
    payments = TopicPartition(settings.topics.payments, 1, 0)
    produce(settings, [({"type": "deposit", "payment_id": "x", "account": "B", "amount": 5,
                         "ts": int(time.time() * 1000)}, None)], customers=())
    from paystream.partitioning import partition_for

    partition = partition_for(b"B", 2)
    end = probe.get_watermark_offsets(TopicPartition(settings.topics.payments, partition), timeout=10, cached=False)[1]
    probe.close()
    for future in admin.delete_records([TopicPartition(settings.topics.payments, partition, end)]).values():
        future.result()
    task = TaskRuntime(settings, task_id_of(settings, partition), {"customers": {}}, app=PAYMENTS).open()
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            task.poll(100)
            time.sleep(0.05)
        raise AssertionError("no error for a deleted position")
    except TaskStateError as error:
        assert f"{settings.topics.payments}[{partition}]" in str(error)
    del payments


def test_a_partition_count_that_differs_from_the_settings_stops_the_engine_with_one_clear_line(
        make_settings: Any) -> None:
    from confluent_kafka.admin import AdminClient, NewPartitions

    from connectors.topology import TopologyError, check_topology

    settings = task_settings(make_settings)
    assert check_topology(settings, PAYMENTS).topic_ids[settings.changelog_topic]
    admin = AdminClient(clients.admin_config(settings))
    for future in admin.create_partitions([NewPartitions(settings.credits_topic, 3)]).values():
        future.result()
    deadline = time.monotonic() + 30  # until the brokers' metadata shows the new partition
    while True:
        try:
            check_topology(settings, PAYMENTS)
        except TopologyError as error:
            assert f"topic {settings.credits_topic} has 3 partitions but kafka.partitions is 2" in str(error)
            return
        assert time.monotonic() < deadline, "a credits topic with more partitions than tasks was accepted"
        time.sleep(0.2)


# -- stops that are not crashes ------------------------------------------------------------------


def unstable_partitions(settings: Settings) -> dict[tuple[str, int], tuple[int, int]]:
    """Output partitions whose last stable offset is below the high watermark: an open transaction."""
    from confluent_kafka import Consumer, TopicPartition

    committed = Consumer(clients.consumer_config(settings, "lso-probe"))  # read_committed: LSO
    uncommitted = Consumer(clients.consumer_config(settings, "hwm-probe", **{"isolation.level": "read_uncommitted"}))
    blocked = {}
    for topic in [*settings.topics.outputs(), settings.credits_topic, settings.changelog_topic]:
        for partition in range(settings.kafka.partitions):
            tp = TopicPartition(topic, partition)
            stable = committed.get_watermark_offsets(tp, timeout=10, cached=False)[1]
            high = uncommitted.get_watermark_offsets(tp, timeout=10, cached=False)[1]
            if stable != high:
                blocked[(topic, partition)] = (stable, high)
    committed.close()
    uncommitted.close()
    return blocked


def test_sigterm_under_load_commits_the_open_epoch_and_exits_zero_leaving_no_reader_blocked(
        make_settings: Any, tmp_path: Path) -> None:
    """Before: SIGTERM ended the worker with status -15, its transactions open: every output
    partition blocked `read_committed` readers until a successor fenced them."""
    import signal

    from tools.cli.generate import produce_traffic
    from tools.runner import LagProbe

    settings = make_settings(partitions=4, engine={"max_in_flight": 1_000})
    produce_traffic(settings, accounts=2_000, payments=60_000, seed=31, bad_ratio=0.01, progress=False)
    procs = FlowProcesses(settings, 1, log_dir=tmp_path / "logs")
    procs.start()
    probe = LagProbe(settings)
    try:
        deadline = time.monotonic() + 120
        while probe.payments_committed() < 5_000:  # the premise: the engine is working
            assert all(procs.alive()) and time.monotonic() < deadline, procs.returncodes()
            time.sleep(0.05)
        process = procs.procs[0]
        assert process is not None
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=settings.engine.shutdown_timeout_ms / 1000 + 10)
        stopped = time.monotonic()
    finally:
        probe.close()
        procs.stop()
    assert code == 0, (tmp_path / "logs" / "worker-0.log").read_text()[-3000:]
    while blocked := unstable_partitions(settings):
        assert time.monotonic() - stopped < 1.0, f"readers blocked after a graceful stop: {blocked}"
        time.sleep(0.05)

    run_flow(settings, 60_000, tmp_path / "again")  # a restart loses and doubles nothing
    assert_audit_green(settings)


# -- snapshots ------------------------------------------------------------------------------------


def opened_with_work(settings: Settings, payments: int = 20) -> Any:
    from connectors.tasks import TaskRuntime, task_id_of
    from tests.connectors.test_recovery import drain

    now = int(time.time() * 1000)
    produce(settings, [({"type": "deposit", "payment_id": f"d{n}", "account": "A", "amount": 5, "ts": now}, None)
                       for n in range(payments)])
    task = TaskRuntime(settings, task_id_of(settings, 0), {"customers": {}}, app=PAYMENTS).open()
    assert drain(task) == payments
    return task


def test_a_snapshot_is_labelled_with_the_changelog_end_read_before_its_commit(make_settings: Any) -> None:
    """Before: the label was read after `commit_transaction`, so with two owners overlapping old
    state could carry the successor's offset and a restore would skip the successor's changes."""
    from confluent_kafka import Consumer, TopicPartition

    from connectors.tasks import TaskRuntime, task_id_of

    settings = make_settings(partitions=1, engine={"snapshot_every_epochs": 1})
    task = opened_with_work(settings)
    changelog = TopicPartition(settings.changelog_topic, 0)
    probe = Consumer(clients.consumer_config(settings, "probe", **{"isolation.level": "read_uncommitted"}))
    before = probe.get_watermark_offsets(changelog, timeout=10, cached=False)[1]
    task.commit(wait=True)
    after = probe.get_watermark_offsets(changelog, timeout=10, cached=False)[1]
    probe.close()
    labels = [int(path.name.split(".")[-2]) for path in task.snapshots.directory.glob("*.snapshot")]
    assert labels == [before] and before < after
    restored = TaskRuntime(settings, task_id_of(settings, 0), {"customers": {}}, app=PAYMENTS).open()
    assert restored.accounts == task.accounts


def test_a_failed_snapshot_write_is_logged_and_skipped(make_settings: Any, tmp_path: Path) -> None:
    """Before: a snapshot write failing after a successful commit killed the process, although
    the snapshot is only a cache."""
    from connectors.tasks import TaskRuntime, task_id_of

    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the snapshot directory should be")
    settings = make_settings(partitions=1, engine={"snapshot_every_epochs": 1, "snapshot_dir": str(blocker / "snaps")})
    task = opened_with_work(settings)
    task.commit(wait=True)  # commits; the snapshot cannot be written
    restored = TaskRuntime(settings, task_id_of(settings, 0), {"customers": {}}, app=PAYMENTS).open()
    assert restored.accounts == task.accounts and restored.accounts["A"].seq == 20  # every command decided once
