"""Differential test: the reference model and the engine's pure domain core (`operators/`),
written separately from the same RULES.md, compute the same outputs on generated traffic.

Only this test imports both; the auditor itself shares no code with the engine.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from operators.accounts import AccountState
from operators.payments import apply_credit, decide
from paystream.settings import load
from paystream.wire import Malformed, SourcePosition, decode_command, decode_customer
from tests.verify.snapshots import input_records
from tools.traffic import Traffic
from verify.geo import distance_km
from verify.model import run_input_order
from verify.render import output_bodies
from verify.validation import customer_table


def _engine_core_outputs(customers: list[Any], payments: list[Any], settings: Any) -> dict[str, list[dict]]:
    """The domain core driven in input order, each credit applied right after its transfer."""
    table = {}
    for record in customers:
        row = decode_customer(record.key, record.value)
        if row is None and record.key is not None:
            table.pop(record.key.decode(), None)
        elif row is not None and not isinstance(row, Malformed):
            table[row.account] = row
    accounts: dict[str, AccountState] = {}
    out: dict[str, list[dict]] = {"decisions": [], "ledger": [], "balances": [], "alerts": [], "completed": []}

    def emit(outcome: Any) -> None:
        for name, value in (("decisions", outcome.decision), ("balances", outcome.balance),
                            ("completed", outcome.completed)):
            if value is not None:
                out[name].append(msgspec.to_builtins(value))
        out["ledger"] += [msgspec.to_builtins(entry) for entry in outcome.ledger]
        out["alerts"] += [msgspec.to_builtins(alert) for alert in outcome.alerts]

    for record in payments:
        command = decode_command(record.key, record.value)
        if isinstance(command, Malformed):
            continue
        account = accounts.setdefault(command.account, AccountState())
        outcome = decide(command, account, table, settings.rules,
                         SourcePosition(record.topic, record.partition, record.offset))
        emit(outcome)
        if outcome.credit is not None:
            emit(apply_credit(outcome.credit, accounts.setdefault(outcome.credit.account, AccountState()),
                              settings.rules.duplicate.horizon_ms))
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_model_and_domain_core_compute_the_same_outputs(seed: int) -> None:
    settings = load(environ={}, rules={"velocity": {"max_authorizations": 3}})
    records = list(Traffic(accounts=120, payments=4000, seed=seed, bad_ratio=0.03))
    customers, payments = input_records([(k, v) for kind, k, v in records if kind == "customers"],
                                        [(k, v) for kind, k, v in records if kind == "payments"])
    payments.sort(key=lambda r: (r.partition, r.offset))
    model = output_bodies(run_input_order(payments, customer_table([(r.key, r.value) for r in customers]),
                                          settings.rules, distance_km))
    core = _engine_core_outputs(customers, payments, settings)
    for name in ("decisions", "ledger", "balances", "alerts", "completed"):
        assert len(model[name]) == len(core[name]), name
        for mine, theirs in zip(model[name], core[name], strict=True):
            assert mine == theirs, name


def test_where_a_rule_raises_the_model_told_where_computes_what_the_domain_core_does(monkeypatch: Any) -> None:
    """A rule that raises declines its command `rule_error` (fail closed) and changes the account
    only as a decline at stage 2 would: the model, told which inputs the engine dead-lettered so,
    agrees with the domain core on every output that follows, windows and card uses included."""
    import operators.payments as payments

    def raising(rule: Any, every: int) -> Any:
        def wrapped(*args: Any) -> Any:
            wrapped.calls += 1  # type: ignore[attr-defined]
            if wrapped.calls % every == 0:  # type: ignore[attr-defined]
                raise ArithmeticError("the rule could not be evaluated")
            return rule(*args)
        wrapped.calls = 0  # type: ignore[attr-defined]
        return wrapped

    for name, every in (("exceeds_funds", 23), ("travel_alert", 19), ("customer_refusal", 101),
                        ("recipient_refusal", 7)):
        monkeypatch.setattr(payments, name, raising(getattr(payments, name), every))
    settings = load(environ={}, rules={"velocity": {"max_authorizations": 3}})
    records = list(Traffic(accounts=120, payments=4000, seed=5, bad_ratio=0.03))
    customers, inputs = input_records([(k, v) for kind, k, v in records if kind == "customers"],
                                      [(k, v) for kind, k, v in records if kind == "payments"])
    inputs.sort(key=lambda r: (r.partition, r.offset))
    core = _engine_core_outputs(customers, inputs, settings)
    failed = frozenset((d["source"]["topic"], d["source"]["partition"], d["source"]["offset"])
                       for d in core["decisions"] if d["reasons"] == ["rule_error"])
    assert len(failed) > 40  # every rule above raised on some commands
    model = output_bodies(run_input_order(inputs, customer_table([(r.key, r.value) for r in customers]),
                                          settings.rules, distance_km, rule_errors=failed))
    for name in ("decisions", "ledger", "balances", "alerts", "completed"):
        assert len(model[name]) == len(core[name]), name
        for mine, theirs in zip(model[name], core[name], strict=True):
            assert mine == theirs, name
