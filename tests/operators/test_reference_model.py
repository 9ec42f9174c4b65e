"""The engine's domain core against the independent reference model (verify/model.py).

Both implement docs/RULES.md separately; on random command streams (input order, each
transfer's credit applied right after it) they must agree on every decision, reason, ledger
entry, balance, alert and completed fact.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from paystream.records import InboundRecord
from paystream.settings import load
from tests.operators.test_properties import CUSTOMERS, commands, fresh, record, run
from verify.geo import distance_km

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
    customers = {name: msgspec.convert(msgspec.to_builtins(row), validation.Customer, strict=False)
                 for name, row in CUSTOMERS.items()}
    inputs = [validation.InputRecord(r.topic(), r.partition(), r.offset(), r.key(), r.value()) for r in records]
    out = model.run_input_order(inputs, customers, SETTINGS.rules, distance_km, partitions=None)

    def wire(items: list[Any], **extra: Any) -> list[Any]:
        rows = []
        for item in items:
            row = {"v": 1, **msgspec.to_builtins(item), **extra}
            if "source" in row:
                row["source"] = dict(zip(("topic", "partition", "offset"), msgspec.to_builtins(item.source),
                                         strict=True))
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
    assert by_key(engine.get("ledger", []), "entry_id", "account") == by_key(expected.get("ledger", []),
                                                                              "entry_id", "account")
    assert by_key(engine.get("balances", []), "account", "seq") == by_key(expected.get("balances", []),
                                                                          "account", "seq")
    assert engine.get("fraud-alerts") == expected.get("fraud-alerts")
    assert engine.get("payment-completed") == expected.get("payment-completed")


HORIZON = SETTINGS.rules.duplicate.horizon_ms


@st.composite
def late_commands(draw: st.DrawFn) -> list[dict[str, Any]]:
    """`commands()`, with some commands made late by up to three horizons: some are then older
    than the horizon (`outside_horizon`), and closed authorizations are forgotten in between."""
    stream = draw(commands())
    scale = draw(st.sampled_from([1, 10, 30]))  # hypothesis draws small times: stretch them past the horizon
    for body in stream:
        body["ts"] *= scale
        if draw(st.integers(0, 3)) == 0:
            body["ts"] = max(0, body["ts"] - draw(st.integers(0, 3 * HORIZON)))
    return stream


@hypothesis_settings(max_examples=300, deadline=None)
@given(late_commands())
def test_the_engine_agrees_with_the_model_on_late_commands_and_forgotten_authorizations(
        stream: list[dict[str, Any]]) -> None:
    """RULES.md `outside_horizon` and forgotten authorizations, implemented separately in both."""
    records = [record(n, body) for n, body in enumerate(stream)]
    engine = engine_outputs(records)
    assert engine == model_outputs(records)


def engine_outputs_restored_every(records: list[InboundRecord], every: int) -> dict[str, list[Any]]:
    """`engine_outputs`, with the task committed after every record and restored from its
    changelog (latest record per key) every `every` records: what a crash-looping task does."""
    from operators.account_codec import ACCOUNT_CODEC
    from operators.task import TaskProcessor
    from tests.operators.test_properties import CUSTOMERS

    task = fresh(SETTINGS)
    latest: dict[bytes, bytes | None] = {}
    topics: dict[str, list[Any]] = {}
    for n, inbound in enumerate(records):
        for topic, _, value, _ in run(task, [inbound]):
            if topic != SETTINGS.credits_topic:
                topics.setdefault(topic, []).append(msgspec.json.decode(value))
        latest.update(ACCOUNT_CODEC.records(task.accounts, task.changed))
        task.changed.clear()
        if n % every == every - 1:
            accounts: dict[str, Any] = {}
            ACCOUNT_CODEC.apply(latest, accounts)
            assert accounts == task.accounts
            task = TaskProcessor(SETTINGS, CUSTOMERS, accounts)
    return topics


@hypothesis_settings(max_examples=150, deadline=None)
@given(late_commands(), st.integers(1, 5))
def test_sealed_pages_and_restores_change_no_decision(stream: list[dict[str, Any]], every: int) -> None:
    """With changelog pages tiny enough that every account spills, the engine restored from its
    changelog again and again still agrees with the model."""
    from operators import account_codec

    records = [record(n, body) for n, body in enumerate(stream)]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(account_codec, "SPILL_BYTES", 150)
        patch.setattr(account_codec, "PAGE_BYTES", 100)
        patch.setattr(account_codec, "WINDOW_PAGE_ENTRIES", 2)
        engine = engine_outputs_restored_every(records, every)
    assert engine == model_outputs(records)
