"""The auditor's invariant checks on in-memory topics: green on correct outputs, and each injected
fault is named by the invariant it breaks."""

from __future__ import annotations

import json

import msgspec
import pytest

from tests.verify.snapshots import SETTINGS, correct_snapshot, input_records, snapshot_of
from tools.traffic import Traffic
from verify.audit import Snapshot, audit
from verify.geo import distance_km
from verify.model import run_engine_order
from verify.validation import Command, InputRecord, classify_payment, customer_table


@pytest.fixture(scope="module")
def correct() -> Snapshot:
    records = list(Traffic(accounts=150, payments=3000, seed=21, bad_ratio=0.05))
    customers, payments = input_records([(k, v) for kind, k, v in records if kind == "customers"],
                                        [(k, v) for kind, k, v in records if kind == "payments"])
    snapshot, _ = correct_snapshot(customers, payments)
    return snapshot


def fresh(snapshot: Snapshot) -> Snapshot:
    return Snapshot(**{name: list(value) if isinstance(value, list) else value
                       for name, value in vars(snapshot).items()})


def run(snapshot: Snapshot) -> list[str]:
    return audit(snapshot, SETTINGS.rules, distance_km).violated()


def body(record: InputRecord) -> dict:
    return json.loads(record.value or b"")


def with_value(record: InputRecord, value: dict) -> InputRecord:
    return msgspec.structs.replace(record, value=json.dumps(value).encode())


def test_correct_outputs_pass_every_check(correct: Snapshot) -> None:
    result = audit(correct, SETTINGS.rules, distance_km)
    assert result.ok, result.table()
    assert all(f.checked > 0 for f in result.findings.values()), result.table()


def test_a_duplicated_decision_breaks_invariant_1(correct: Snapshot) -> None:
    snapshot = fresh(correct)
    original = snapshot.decisions[10]
    snapshot.decisions.append(msgspec.structs.replace(original, offset=10**6))
    assert "1_one_decision" in run(snapshot)


def test_a_lost_decision_breaks_invariant_1(correct: Snapshot) -> None:
    snapshot = fresh(correct)
    del snapshot.decisions[5]
    assert "1_one_decision" in run(snapshot)


def test_a_missing_transfer_credit_breaks_invariant_2(correct: Snapshot) -> None:
    snapshot = fresh(correct)
    transfers = {body(r)["payment_id"] for r in snapshot.decisions
                 if body(r)["type"] == "transfer" and body(r)["decision"] == "approved"}
    victim = next(i for i, r in enumerate(snapshot.ledger)
                  if body(r)["direction"] == "credit" and body(r)["payment_id"] in transfers)
    del snapshot.ledger[victim]
    violated = run(snapshot)
    assert "2_transfer_pairs" in violated and "3_balances" in violated


def test_a_wrong_balance_breaks_invariant_3(correct: Snapshot) -> None:
    snapshot = fresh(correct)
    last = body(snapshot.balances[-1])
    last["posted"] += 1
    last["available"] += 1
    snapshot.balances[-1] = with_value(snapshot.balances[-1], last)
    violated = run(snapshot)
    assert "3_balances" in violated and "4_conservation" in violated
    assert "1_one_decision" not in violated and "2_transfer_pairs" not in violated


def test_a_missing_dead_letter_breaks_invariant_5(correct: Snapshot) -> None:
    snapshot = fresh(correct)
    del snapshot.dlq[3]
    assert run(snapshot) == ["5_dlq"]


def test_a_wrong_dead_letter_reason_breaks_invariant_5(correct: Snapshot) -> None:
    snapshot = fresh(correct)
    record = snapshot.dlq[0]
    headers = tuple((k, b"made_up" if k == "dlq.reason" else v) for k, v in record.headers)
    snapshot.dlq[0] = msgspec.structs.replace(record, headers=headers)
    assert run(snapshot) == ["5_dlq"]


def test_decisions_out_of_input_order_break_invariant_6(correct: Snapshot) -> None:
    snapshot = fresh(correct)
    by_account: dict[str, list[int]] = {}
    for i, record in enumerate(snapshot.decisions):
        by_account.setdefault(body(record)["account"], []).append(i)
    first, second = next(indexes for indexes in by_account.values() if len(indexes) >= 2)[:2]
    a, b = snapshot.decisions[first], snapshot.decisions[second]
    snapshot.decisions[first] = msgspec.structs.replace(a, value=b.value)
    snapshot.decisions[second] = msgspec.structs.replace(b, value=a.value)
    assert "6_order" in run(snapshot)


def test_a_wrong_decision_disagrees_with_the_model(correct: Snapshot) -> None:
    snapshot = fresh(correct)
    i = next(i for i, r in enumerate(snapshot.decisions) if body(r)["decision"] == "declined")
    changed = body(snapshot.decisions[i]) | {"reasons": ["velocity"]}
    snapshot.decisions[i] = with_value(snapshot.decisions[i], changed)
    assert run(snapshot) == ["model_decisions"]


def test_an_unreadable_output_record_is_reported(correct: Snapshot) -> None:
    snapshot = fresh(correct)
    snapshot.alerts.append(InputRecord("fraud-alerts", 0, 10**6, b"A", b"{oops"))
    assert run(snapshot) == ["outputs_readable"]


def test_credits_applied_later_than_input_order_are_replayed_in_the_engines_order(correct: Snapshot) -> None:
    """An engine that applies every credit after the recipient's own commands is still correct."""
    table = customer_table([(r.key, r.value) for r in correct.customers])
    commands = [v for v in (classify_payment(r, correct.payment_partitions) for r in correct.payments)
                if isinstance(v, Command)]
    late: dict[str, list[tuple[int, str]]] = {}
    for transfer in (c for c in commands if c.type == "transfer"):
        late.setdefault(transfer.to_account or "", []).append((10**9, transfer.payment_id))
    assert late
    outputs = run_engine_order(correct.payments, table, SETTINGS.rules, distance_km, late, correct.payment_partitions)
    engine_like = snapshot_of(correct.customers, correct.payments, outputs)
    assert [body(r) for r in engine_like.balances] != [body(r) for r in correct.balances]
    result = audit(engine_like, SETTINGS.rules, distance_km)
    assert result.ok, result.table()


def test_following_a_running_engine_audits_only_the_inputs_it_got_to(correct: Snapshot) -> None:
    from verify.audit import cut_at_outputs

    snapshot = fresh(correct)
    # the engine has not yet written the outputs of the later half of partition 0's inputs
    payments0 = [r for r in snapshot.payments if r.partition == 0]
    cut = payments0[len(payments0) // 2].offset
    later = {r.offset for r in payments0 if r.offset > cut}

    def before_cut(record: InputRecord, source: tuple[str, int, int]) -> bool:
        return not (source[1] == 0 and source[2] in later)

    snapshot.decisions = [r for r in snapshot.decisions
                          if before_cut(r, (body(r)["source"]["topic"], body(r)["source"]["partition"],
                                            body(r)["source"]["offset"]))]
    snapshot.dlq = [r for r in snapshot.dlq
                    if before_cut(r, ("", int(dict(r.headers)["dlq.partition"]), int(dict(r.headers)["dlq.offset"])))]
    assert "1_one_decision" in run(snapshot)  # read as finished, the missing half is lost
    trimmed = cut_at_outputs(snapshot)
    assert len(trimmed.payments) < len(snapshot.payments)
    # the outputs still hold the later inputs' ledger and balances, so only count decisions here
    result = audit(trimmed, SETTINGS.rules, distance_km)
    assert result.findings["1_one_decision"].violations == 0
    assert result.findings["5_dlq"].violations == 0


def test_a_rule_error_is_one_decline_and_one_dead_letter_and_the_audit_checks_both() -> None:
    """Where a rule raised, the engine declines `rule_error` and dead-letters a copy: the auditor
    models the decline there (it cannot know which rule raises) and counts these; a rule_error
    without its copy, or a copy without its decline, is a violation."""
    from verify.model import run_input_order

    records = list(Traffic(accounts=60, payments=1200, seed=8, bad_ratio=0.0))
    customers, payments = input_records([(k, v) for kind, k, v in records if kind == "customers"],
                                        [(k, v) for kind, k, v in records if kind == "payments"])
    table = customer_table([(r.key, r.value) for r in customers])
    plain = run_input_order(payments, table, SETTINGS.rules, distance_km, 4)
    picked = frozenset((d.source.topic, d.source.partition, d.source.offset)
                       for d in plain.decisions[5::97] if d.reasons != ("outside_horizon",))
    outputs = run_input_order(payments, table, SETTINGS.rules, distance_km, 4, rule_errors=picked)
    snapshot = snapshot_of(customers, payments, outputs)
    by_position = {(r.topic, r.partition, r.offset): r for r in payments}
    for n, (topic, partition, offset) in enumerate(sorted(picked)):
        source = by_position[(topic, partition, offset)]
        headers = (("dlq.reason", b"rule_error"), ("dlq.error", b"ValueError in velocity_alert: boom"),
                   ("dlq.topic", topic.encode()), ("dlq.partition", str(partition).encode()),
                   ("dlq.offset", str(offset).encode()))
        snapshot.dlq.append(InputRecord(SETTINGS.topics.dlq, 0, 10_000 + n, source.key, source.value, headers))
    result = audit(snapshot, SETTINGS.rules, distance_km)
    assert result.ok, result.table()
    assert result.counts["rule_errors"] == len(picked) >= 10

    without_copy = fresh(snapshot)
    without_copy.dlq.pop()
    assert "model_decisions" in run(without_copy)  # the model decides it as it would: not declined

    twice = fresh(snapshot)
    twice.dlq.append(msgspec.structs.replace(twice.dlq[-1], offset=20_000))
    assert run(twice) == ["5_dlq"]
