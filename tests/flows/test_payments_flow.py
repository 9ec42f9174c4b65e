"""The payment dataflow's wiring, run by Bytewax itself (`run_main`, `cluster_main`) on
`TestingSource` batches, with the task sink's transactions kept in memory."""

from __future__ import annotations

from collections import Counter
from typing import Any

import msgspec
import pytest
from bytewax.testing import cluster_main, run_main

from connectors.memory import MemoryTasks, batches_by_task
from flows.payments import PAYMENTS, build_flow
from paystream.partitioning import partition_for
from paystream.records import InboundRecord
from paystream.settings import Settings, load
from state.customers import CustomerTable
from tools.traffic import Traffic

PARTITIONS = 4


@pytest.fixture(scope="module")
def settings() -> Settings:
    return load(environ={}, kafka={"partitions": PARTITIONS})


def command(payment_id: str, account: str, type_: str = "deposit", amount: int = 1_000, **extra: Any) -> dict[str, Any]:
    return {"v": 1, "type": type_, "payment_id": payment_id, "account": account, "amount": amount,
            "currency": "EUR", "ts": 1_767_225_600_000, **extra}


def customer(account: str, **changes: Any) -> dict[str, Any]:
    return {"v": 1, "account": account, "kyc": "verified", "blocked": False, "single_limit": 100_000,
            "daily_limit": 1_000_000, "home_country": "DE", "currency": "EUR", **changes}


def as_records(settings: Settings, values: list[tuple[bytes | None, bytes | None]]) -> list[InboundRecord]:
    """Place each record in the partition its key hashes to, offsets counting per partition."""
    offsets: Counter[int] = Counter()
    records = []
    for key, value in values:
        partition = partition_for(key, PARTITIONS) if key else 0
        records.append(InboundRecord(settings.topics.payments, partition, offsets[partition], key, value))
        offsets[partition] += 1
    return records


def run(settings: Settings, table: CustomerTable, records: list[InboundRecord], workers: int = 1) -> MemoryTasks:
    tasks = MemoryTasks(settings, PAYMENTS, {"customers": table})
    flow = build_flow(settings, tasks.source_and_sink(batches_by_task(settings, records, batch_size=7)))
    if workers == 1:
        run_main(flow)
    else:
        cluster_main(flow, addresses=[], proc_id=0, worker_count_per_proc=workers)
    return tasks


def decoded(tasks: MemoryTasks, topic: str) -> list[dict[str, Any]]:
    return [msgspec.json.decode(value) for _key, value, _headers in tasks.committed[topic]]


def test_malformed_records_branch_to_the_dlq_with_their_reason_and_the_rest_is_decided(settings: Settings) -> None:
    table = CustomerTable()
    table.apply(b"A", msgspec.json.encode(customer("A")))
    records = as_records(settings, [
        (b"A", msgspec.json.encode(command("p1", "A"))),
        (b"A", b"{not json"),
        (b"A", msgspec.json.encode(command("p2", "A", amount=-5))),
        (b"A", None),
        (b"A", msgspec.json.encode(command("p3", "A"))),
    ])
    tasks = run(settings, table, records)
    assert [d["payment_id"] for d in decoded(tasks, settings.topics.decisions)] == ["p1", "p3"]
    reasons = [dict(headers)["dlq.reason"] for _k, _v, headers in tasks.committed[settings.topics.dlq]]
    assert reasons == [b"not_json", b"non_positive_amount", b"empty_value"]
    originals = [value for _k, value, _h in tasks.committed[settings.topics.dlq]]
    assert originals == [b"{not json", msgspec.json.encode(command("p2", "A", amount=-5)), None]


def test_the_customer_table_is_joined_unknown_and_blocked_customers_are_declined(settings: Settings) -> None:
    table = CustomerTable()
    table.apply(b"OK", msgspec.json.encode(customer("OK")))
    table.apply(b"BLOCKED", msgspec.json.encode(customer("BLOCKED", blocked=True)))
    table.apply(b"GONE", msgspec.json.encode(customer("GONE")))
    table.apply(b"GONE", None)  # a tombstone removes the customer
    records = as_records(settings, [(account.encode(), msgspec.json.encode(command(f"p-{account}", account)))
                                    for account in ("OK", "BLOCKED", "GONE", "NEVER")])
    tasks = run(settings, table, records)
    outcome = {d["account"]: (d["decision"], d["reasons"]) for d in decoded(tasks, settings.topics.decisions)}
    assert outcome == {"OK": ("approved", []), "BLOCKED": ("declined", ["customer_blocked"]),
                       "GONE": ("declined", ["unknown_customer"]), "NEVER": ("declined", ["unknown_customer"])}


def generated(settings: Settings, payments: int = 3_000) -> tuple[CustomerTable, list[InboundRecord]]:
    table, values = CustomerTable(), []
    for kind, key, value in Traffic(accounts=300, payments=payments, seed=11, bad_ratio=0.02):
        if kind == "customers":
            table.apply(key, value)
        else:
            values.append((key, value))
    return table, as_records(settings, values)


def test_every_record_reaches_the_task_of_its_partition_and_every_output_topic_is_written(settings: Settings) -> None:
    table, records = generated(settings)
    tasks = run(settings, table, records)
    for task_id, task in tasks.tasks.items():
        partition = int(task_id.rsplit("-", 1)[1])
        assert task.accounts and all(partition_for(account.encode(), PARTITIONS) == partition
                                     for account in task.accounts)
    assert set(tasks.tasks) == {f"{settings.topics.payments}-{p}" for p in range(PARTITIONS)}
    t = settings.topics
    for topic in (t.decisions, t.ledger, t.balances, t.alerts, t.completed, t.dlq, settings.credits_topic):
        assert tasks.committed[topic], topic
    decided = len(tasks.committed[t.decisions])
    dead = len(tasks.committed[t.dlq])
    duplicates = sum(task.processor.counts[("duplicate",)] for task in tasks.tasks.values())
    assert decided + dead + duplicates == len(records)  # every input accounted for exactly once
    assert {(p, o) for (topic, p), o in tasks.offsets.items()} == {
        (p, 1 + max(r.offset() for r in records if r.partition() == p)) for p in range(PARTITIONS)}


def test_two_workers_commit_exactly_what_one_worker_commits(settings: Settings) -> None:
    table, records = generated(settings, payments=2_000)
    one = run(settings, table, records)
    two = run(settings, table, records, workers=2)
    assert set(one.committed) == set(two.committed)
    for topic in one.committed:  # the same records; only the interleaving of tasks may differ
        assert sorted(map(repr, one.committed[topic])) == sorted(map(repr, two.committed[topic])), topic
