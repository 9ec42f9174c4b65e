"""`paystream verify` against a real broker: correct outputs written in transactions verify
green; an injected duplicate decision or a dropped transfer credit is named by its invariant."""

from __future__ import annotations

import argparse
import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from paystream.clients import producer_config
from paystream.settings import Settings
from tools.cli.verify import handler
from tools.traffic import Traffic, recent_start_ts
from verify.geo import distance_km
from verify.model import run_input_order
from verify.readback import read_topics
from verify.render import output_records
from verify.validation import customer_table, payment_partition

pytestmark = pytest.mark.broker

MISROUTED = 3


def _write_inputs(settings: Settings) -> None:
    """Customers and payments as a producer outside paystream writes them, plus a few records
    deliberately put in the wrong partition."""
    producer = Producer(producer_config(settings))
    topics = {"customers": settings.topics.customers, "payments": settings.topics.payments}
    now = int(time.time() * 1000)
    for kind, key, value in Traffic(accounts=60, payments=1500, seed=5, bad_ratio=0.05,
                                    start_ts=recent_start_ts(1500, now)):
        producer.produce(topics[kind], key=key, value=value)
        producer.poll(0)
    for n in range(MISROUTED):
        key = b"ACC00000001"
        value = json.dumps({"v": 1, "type": "deposit", "payment_id": f"mis-{n}", "account": "ACC00000001",
                            "amount": 5, "currency": "EUR", "ts": now}).encode()
        wrong = (payment_partition(key, settings.kafka.partitions) + 1) % settings.kafka.partitions
        producer.produce(settings.topics.payments, key=key, value=value, partition=wrong)
    assert producer.flush(30) == 0


def _write_outputs(settings: Settings, skip: Any = None, extra_decision: bool = False) -> None:
    """The reference model's outputs, produced in transactions as the engine would; `skip(topic,
    value)` drops records, `extra_decision` re-sends one decision. One aborted transaction of
    garbage shows that the auditor reads `read_committed`."""
    records = read_topics(settings, [settings.topics.customers, settings.topics.payments])
    outputs = run_input_order(records[settings.topics.payments],
                              customer_table([(r.key, r.value) for r in records[settings.topics.customers]]),
                              settings.rules, distance_km, settings.kafka.partitions)
    assert len(outputs.dead_letters) >= MISROUTED
    assert sum(invalid.reason == "misrouted" for invalid in outputs.dead_letters) == MISROUTED
    producer = Producer(producer_config(settings, **{"transactional.id": f"test-verify-{uuid.uuid4().hex}"}))
    producer.init_transactions(30)
    per_topic = output_records(outputs, settings.topics)
    rows = [(topic, record) for topic, topic_records in per_topic.items() for record in topic_records
            if skip is None or not skip(topic, record[1])]
    if extra_decision:
        rows.append(next(row for row in rows if row[0] == settings.topics.decisions))
    half = len(rows) // 2
    for chunk in (rows[:half], rows[half:]):
        producer.begin_transaction()
        for topic, (key, value, headers) in chunk:
            producer.produce(topic, key=key, value=value, headers=headers)
            producer.poll(0)
        producer.commit_transaction(30)
    producer.begin_transaction()
    topic, (key, value, headers) = rows[0]
    producer.produce(topic, key=key, value=value, headers=headers)  # a duplicate nobody may see
    producer.flush(30)
    producer.abort_transaction(30)


def _verify(settings: Settings, tmp_path: Path) -> tuple[int, dict[str, Any]]:
    out = tmp_path / f"verify-{uuid.uuid4().hex[:6]}.json"
    code = handler(argparse.Namespace(settings=settings, json=str(out), follow=False, interval=0, metrics_port=None))
    return code, json.loads(out.read_text())


def _violated(result: dict[str, Any]) -> set[str]:
    return {name for name, row in result["invariants"].items() if row["violations"]}


def test_correct_transactional_outputs_verify_green(make_settings: Any, tmp_path: Path) -> None:
    settings = make_settings(partitions=4)
    _write_inputs(settings)
    _write_outputs(settings)
    code, result = _verify(settings, tmp_path)
    assert code == 0 and _violated(result) == set(), result
    assert result["counts"]["decisions"] > 1000 and result["invariants"]["5_dlq"]["checked"] >= MISROUTED


def test_a_duplicate_decision_on_the_topic_is_named_invariant_1(make_settings: Any, tmp_path: Path) -> None:
    settings = make_settings(partitions=4)
    _write_inputs(settings)
    _write_outputs(settings, extra_decision=True)
    code, result = _verify(settings, tmp_path)
    assert code == 1 and "1_one_decision" in _violated(result)
    assert "duplicated" in result["invariants"]["1_one_decision"]["example"]


def test_a_dropped_transfer_credit_is_named_invariant_2(make_settings: Any, tmp_path: Path) -> None:
    settings = make_settings(partitions=4)
    _write_inputs(settings)
    dropped: list[bytes] = []

    def drop_first_transfer_credit(topic: str, value: bytes | None) -> bool:
        if dropped or topic != settings.topics.ledger or value is None:
            return False
        entry = json.loads(value)
        # a transfer's credit is keyed by the recipient; deposits and refunds credit their own payer
        if entry["direction"] == "credit" and entry["entry_id"].endswith(":credit") and _is_transfer(entry):
            dropped.append(value)
            return True
        return False

    transfers: set[str] = set()

    def _is_transfer(entry: dict[str, Any]) -> bool:
        return entry["payment_id"] in transfers

    records = read_topics(settings, [settings.topics.payments])[settings.topics.payments]
    for record in records:
        try:
            command = json.loads(record.value or b"")
        except ValueError:
            continue
        if isinstance(command, dict) and command.get("type") == "transfer":
            transfers.add(command.get("payment_id"))
    _write_outputs(settings, skip=drop_first_transfer_credit)
    assert dropped
    code, result = _verify(settings, tmp_path)
    assert code == 1 and "2_transfer_pairs" in _violated(result)
