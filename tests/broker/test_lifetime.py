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

from paystream import clients
from paystream.geo import distance_km
from paystream.runner import FlowProcesses, wait_until_caught_up
from paystream.settings import Settings
from tests.broker.test_recovery import read_committed
from tests.operators.builders import customer
from verify.audit import audit
from verify.readback import read_snapshot

MINUTE = 60_000


def produce(settings: Settings, commands: list[tuple[dict[str, Any], int | None]], customers: tuple[str, ...] = ("A",)) -> None:
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
        ({"type": "capture", "payment_id": "c1", "account": "A", "amount": 400, "ts": t + 100, "auth_id": "a1"}, t + 100),
        ({"type": "deposit", "payment_id": "d1", "account": "A", "amount": 5, "ts": later}, later),
        (authorize, t),
        ({"type": "capture", "payment_id": "c2", "account": "A", "amount": 400, "ts": later + 100, "auth_id": "a1"},
         later + 100),
    ])

    run_flow(settings, 6, tmp_path / "logs")

    decided = [(d["payment_id"], d["decision"], d["reasons"]) for d in outputs(settings, settings.topics.decisions)]
    assert decided[-2:] == [("a1", "declined", ["authorization_exists"]), ("c2", "declined", ["authorization_closed"])]
    last = outputs(settings, settings.topics.balances)[-1]
    assert (last["posted"], last["held"]) == (10_000 - 400 + 5, 0)
    assert_audit_green(settings)
