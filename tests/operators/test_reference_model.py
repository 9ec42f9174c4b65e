"""The engine's domain core against the independent reference model (verify/model.py).

Both implement docs/RULES.md separately; on random command streams (input order, each
transfer's credit applied right after it) they must agree on every decision, reason, ledger
entry, balance, alert and completed fact.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given, settings as hypothesis_settings

from operators.task import InboundRecord
from paystream.geo import distance_km
from paystream.settings import load
from tests.operators.test_properties import CUSTOMERS, commands, fresh, record, run

model = pytest.importorskip("verify.model")
validation = pytest.importorskip("verify.validation")

# rules tight enough that every one fires in short random streams, and ids are forgotten
SETTINGS = load(
    environ={},
    kafka={"partitions": 1},
    rules={
        "velocity": {"max_authorizations": 2, "window_ms": 1_800_000},
        "daily_limit": {"window_ms": 3_600_000},
        "impossible_travel": {"max_speed_kmh": 900},
        "duplicate": {"horizon_ms": 1_200_000},
        "event_time": {"max_skew_ms": 60_000, "max_lateness_ms": 600_000},  # below the horizon
    },
)


def engine_outputs(records: list[InboundRecord]) -> dict[str, list[Any]]:
    """What the engine wrote, per topic, decoded (credits stay internal)."""
    topics: dict[str, list[Any]] = {}
    for topic, _, value, _ in run(fresh(SETTINGS), records):
        if topic != SETTINGS.credits_topic:
            topics.setdefault(topic, []).append(msgspec.json.decode(value))
    return topics


def model_outputs(records: list[InboundRecord]) -> dict[str, list[Any]]:
    """What the reference model says the engine owes, in the same shape."""
    customers = {name: msgspec.convert(msgspec.to_builtins(row), validation.Customer, strict=False) for name, row in CUSTOMERS.items()}
    inputs = [validation.InputRecord(r.topic(), r.partition(), r.offset(), r.key(), r.value()) for r in records]
    out = model.run_input_order(inputs, customers, SETTINGS.rules, distance_km, partitions=None)

    def wire(items: list[Any], **extra: Any) -> list[Any]:
        rows = []
        for item in items:
            row = {"v": 1, **msgspec.to_builtins(item), **extra}
            if "source" in row:
                row["source"] = dict(zip(("topic", "partition", "offset"), msgspec.to_builtins(item.source)))
                row["reasons"] = list(row["reasons"])
            rows.append(row)
        return rows

    topics = {
        "payment-decisions": wire(out.decisions),
        "ledger": wire(out.ledger),
        "balances": wire(out.balances),
        "fraud-alerts": wire(out.alerts),
        "payment-completed": wire(out.completed),
    }
    return {topic: rows for topic, rows in topics.items() if rows}


def by_key(rows: list[dict[str, Any]], *fields: str) -> dict[tuple[Any, ...], dict[str, Any]]:
    return {tuple(row[f] for f in fields): row for row in rows}


@hypothesis_settings(max_examples=300, deadline=None)
@given(commands())
def test_the_engine_agrees_with_the_reference_model(stream: list[dict[str, Any]]) -> None:
    records = [record(n, body) for n, body in enumerate(stream)]
    engine = engine_outputs(records)
    expected = model_outputs(records)
    assert set(engine) == set(expected)
    assert engine.get("payment-decisions") == expected.get("payment-decisions")
    assert by_key(engine.get("ledger", []), "entry_id", "account") == by_key(expected.get("ledger", []), "entry_id", "account")
    assert by_key(engine.get("balances", []), "account", "seq") == by_key(expected.get("balances", []), "account", "seq")
    assert engine.get("fraud-alerts") == expected.get("fraud-alerts")
    assert engine.get("payment-completed") == expected.get("payment-completed")
