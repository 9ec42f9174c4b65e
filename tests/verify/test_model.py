"""The reference model on hand-written scenarios, each from an example in docs/RULES.md."""

from __future__ import annotations

from typing import Any

from paystream.settings import load
from tests.verify.snapshots import SETTINGS, command, customer, input_records
from verify.geo import distance_km
from verify.model import ModelOutputs, run_engine_order, run_input_order, split_payments
from verify.validation import InputRecord, customer_table

MINUTE = 60_000
T0 = 1_767_225_600_000


def run(payments: list[bytes], customers: list[bytes] | None = None, settings: Any = SETTINGS) -> ModelOutputs:
    rows = customers if customers is not None else [customer("A"), customer("B")]
    customer_records, payment_records = input_records(
        [(None, row) for row in rows], [(_account_of(p), p) for p in payments])
    # input order across partitions: keep the order the test wrote them in
    payment_records.sort(key=lambda r: payments.index(r.value))  # type: ignore[arg-type]
    table = customer_table([(r.key, r.value) for r in customer_records])
    return run_input_order(payment_records, table, settings.rules, distance_km, 4)


def _account_of(value: bytes) -> bytes:
    import json
    return json.loads(value)["account"].encode()


def outcomes(outputs: ModelOutputs) -> list[tuple[str, str, tuple[str, ...]]]:
    return [(d.payment_id, d.decision, d.reasons) for d in outputs.decisions]


def balance(outputs: ModelOutputs, account: str) -> tuple[int, int]:
    last = outputs.final_balances()[account]
    assert last.available == last.posted - last.held
    return last.posted, last.held


def test_deposit_credits_the_account_with_a_ledger_entry_a_balance_and_a_completed_fact() -> None:
    out = run([command("deposit", "d1", "A", 500, T0)])
    assert outcomes(out) == [("d1", "approved", ())]
    assert [(e.entry_id, e.account, e.direction, e.amount) for e in out.ledger] == [("d1:credit", "A", "credit", 500)]
    assert [(b.posted, b.held, b.seq, b.cause, b.currency) for b in out.balances] == [(500, 0, 1, "d1", "EUR")]
    assert [(c.payment_id, c.type) for c in out.completed] == [("d1", "deposit")]


def test_authorize_holds_capture_debits_and_releases_the_rest_refund_credits_back() -> None:
    out = run([
        command("deposit", "d1", "A", 1000, T0),
        command("authorize", "a1", "A", 300, T0 + 1, country="DE"),
        command("capture", "c1", "A", 200, T0 + 2, auth_id="a1"),
        command("capture", "c2", "A", 100, T0 + 3, auth_id="a1"),
        command("refund", "r1", "A", 150, T0 + 4, auth_id="a1"),
        command("refund", "r2", "A", 60, T0 + 5, auth_id="a1"),
        command("refund", "r3", "A", 50, T0 + 6, auth_id="a1"),
    ])
    assert outcomes(out) == [
        ("d1", "approved", ()), ("a1", "approved", ()), ("c1", "approved", ()),
        ("c2", "declined", ("authorization_closed",)), ("r1", "approved", ()),
        ("r2", "declined", ("refund_exceeds_captured",)), ("r3", "approved", ()),
    ]
    assert [(b.cause, b.posted, b.held) for b in out.balances] == [
        ("d1", 1000, 0), ("a1", 1000, 300), ("c1", 800, 0), ("r1", 950, 0), ("r3", 1000, 0)]
    assert [e.entry_id for e in out.ledger] == ["d1:credit", "c1:debit", "r1:credit", "r3:credit"]
    assert [d.seq for d in out.decisions] == [1, 2, 3, 4, 5, 6, 7]
    assert [c.type for c in out.completed] == ["deposit", "capture", "refund", "refund"]


def test_void_releases_the_whole_hold_and_closes_the_authorization() -> None:
    out = run([
        command("deposit", "d1", "A", 1000, T0),
        command("authorize", "a1", "A", 300, T0 + 1, country="DE"),
        command("void", "v1", "A", 1, T0 + 2, auth_id="a1"),
        command("capture", "c1", "A", 100, T0 + 3, auth_id="a1"),
        command("refund", "r1", "A", 100, T0 + 4, auth_id="a1"),
        command("void", "v2", "A", 1, T0 + 5, auth_id="nope"),
    ])
    assert [o[1:] for o in outcomes(out)] == [
        ("approved", ()), ("approved", ()), ("approved", ()), ("declined", ("authorization_closed",)),
        ("declined", ("authorization_not_captured",)), ("declined", ("unknown_authorization",))]
    assert balance(out, "A") == (1000, 0)
    assert out.completed[-1].payment_id == "d1"  # authorize and void are no money movement facts


def test_capture_above_the_hold_is_declined() -> None:
    out = run([command("deposit", "d1", "A", 1000, T0), command("authorize", "a1", "A", 300, T0 + 1, country="DE"),
               command("capture", "c1", "A", 301, T0 + 2, auth_id="a1")])
    assert outcomes(out)[-1] == ("c1", "declined", ("capture_exceeds_hold",))
    assert balance(out, "A") == (1000, 300)


def test_transfer_debits_the_sender_and_credits_the_recipient_right_after() -> None:
    out = run([command("deposit", "d1", "A", 1000, T0), command("deposit", "d2", "B", 10, T0),
               command("transfer", "t1", "A", 400, T0 + 1, to_account="B")])
    assert outcomes(out)[-1] == ("t1", "approved", ())
    assert [(e.entry_id, e.account) for e in out.ledger if e.payment_id == "t1"] == [
        ("t1:debit", "A"), ("t1:credit", "B")]
    assert balance(out, "A") == (600, 0) and balance(out, "B") == (410, 0)
    credit = out.balances[-1]
    assert (credit.account, credit.cause, credit.seq, credit.ts) == ("B", "t1", 2, T0 + 1)
    assert [(c.payment_id, c.account, c.type) for c in out.completed][-1] == ("t1", "A", "transfer")


def test_transfers_that_cannot_be_honoured_say_why() -> None:
    rows = [customer("A"), customer("B", blocked=True), customer("C", currency="USD"), customer("D", kyc="pending")]
    out = run([command("deposit", "d1", "A", 1000, T0),
               command("transfer", "t1", "A", 1, T0 + 1, to_account="A"),
               command("transfer", "t2", "A", 1, T0 + 2, to_account="Z"),
               command("transfer", "t3", "A", 1, T0 + 3, to_account="B"),
               command("transfer", "t4", "A", 1, T0 + 4, to_account="C"),
               command("transfer", "t5", "A", 1, T0 + 5, to_account="D")], customers=rows)
    assert [o[2] for o in outcomes(out)[1:]] == [("transfer_to_self",), ("unknown_recipient",),
                                                ("recipient_not_allowed",), ("currency_mismatch",),
                                                ("recipient_not_allowed",)]
    assert balance(out, "A") == (1000, 0)


def test_customer_checks_come_first_and_the_first_that_applies_is_the_reason() -> None:
    rows = [customer("B", blocked=True, kyc="rejected"), customer("C", kyc="pending"), customer("E", currency="GBP")]
    out = run([command("deposit", "x", "Z", 5, T0), command("deposit", "y", "B", 5, T0),
               command("deposit", "z", "C", 5, T0), command("deposit", "w", "E", 5, T0)], customers=rows)
    assert [o[2] for o in outcomes(out)] == [("unknown_customer",), ("customer_blocked",), ("kyc_not_verified",),
                                             ("currency_mismatch",)]
    assert out.balances == [] and out.ledger == []


def test_every_failing_limit_is_listed_in_order() -> None:
    rows = [customer("A", single_limit=100, daily_limit=150)]
    out = run([command("deposit", "d1", "A", 120, T0),
               command("authorize", "a1", "A", 100, T0 + 1, country="DE"),
               command("authorize", "a2", "A", 101, T0 + 2, country="DE"),
               command("authorize", "a3", "A", 60, T0 + 3, country="DE"),
               # a day later the first debit left the rolling window
               command("authorize", "a4", "A", 20, T0 + 1 + 86_400_000, country="DE")], customers=rows)
    assert [o[2] for o in outcomes(out)[1:]] == [
        (), ("single_limit_exceeded", "daily_limit_exceeded", "insufficient_funds"),
        ("daily_limit_exceeded", "insufficient_funds"), ()]
    assert balance(out, "A") == (120, 120)


def test_velocity_sends_the_sixth_authorization_in_the_window_to_review_without_moving_money() -> None:
    payments = [command("deposit", "d1", "A", 10_000, T0)]
    payments += [command("authorize", f"a{i}", "A", 10, T0 + i * MINUTE, country="DE") for i in range(1, 8)]
    out = run(payments)
    assert [o[1] for o in outcomes(out)[1:]] == ["approved"] * 5 + ["review", "review"]
    assert [(a.alert_id, a.rule, a.score, a.evidence) for a in out.alerts] == [
        ("a6:velocity", "velocity", 60, {"count": 6, "window_ms": 600_000, "limit": 5}),
        ("a7:velocity", "velocity", 70, {"count": 7, "window_ms": 600_000, "limit": 5})]
    assert balance(out, "A") == (10_000, 50)


def test_a_limit_declined_authorization_still_counts_for_velocity() -> None:
    rows = [customer("A", single_limit=100)]
    payments = [command("deposit", "d1", "A", 10_000, T0)]
    payments += [command("authorize", f"a{i}", "A", 500, T0 + i, country="DE") for i in range(1, 6)]
    payments += [command("authorize", "a6", "A", 10, T0 + 6, country="DE")]
    out = run(payments, customers=rows)
    assert outcomes(out)[-1] == ("a6", "review", ("velocity",))


def test_impossible_travel_reviews_a_card_used_too_far_too_fast() -> None:
    out = run([command("deposit", "d1", "A", 10_000, T0),
               command("authorize", "a1", "A", 10, T0, country="DE"),
               command("authorize", "a2", "A", 10, T0 + 30 * MINUTE, country="US")])
    distance = distance_km("DE", "US")
    assert distance is not None
    speed = distance * 3_600_000 // (30 * MINUTE)
    assert outcomes(out)[-1] == ("a2", "review", ("impossible_travel",))
    assert out.alerts[0].evidence == {"from_country": "DE", "to_country": "US", "distance_km": distance,
                                      "minutes": 30, "speed_kmh": speed}
    assert out.alerts[0].score == min(100, 50 + 50 * (speed - 1000) // 1000)


# a 1 s duplicate horizon needs event-time bounds below it (settings.check)
NARROW = {"max_skew_ms": 100, "max_lateness_ms": 100}


def test_a_resent_payment_id_has_no_output_until_it_is_past_the_horizon() -> None:
    settings = load(environ={}, rules={"duplicate": {"horizon_ms": 1000}, "event_time": NARROW})
    out = run([command("deposit", "d1", "A", 5, T0), command("deposit", "d1", "A", 5, T0),
               command("deposit", "d2", "A", 5, T0 + 5000), command("deposit", "d1", "A", 5, T0 + 5001)],
              settings=settings)
    assert [(d.payment_id, d.seq) for d in out.decisions] == [("d1", 1), ("d2", 2), ("d1", 3)]
    assert out.duplicates == 1
    assert balance(out, "A") == (15, 0)


def test_engine_order_places_a_credit_where_the_engine_applied_it() -> None:
    payments = [command("deposit", "d1", "A", 100, T0), command("authorize", "b1", "B", 50, T0 + 1, country="DE"),
                command("transfer", "t1", "A", 100, T0, to_account="B")]
    customers, records = input_records([(None, customer("A")), (None, customer("B"))],
                                       [(_account_of(p), p) for p in payments])
    table = customer_table([(r.key, r.value) for r in customers])
    # input order would decide b1 without funds; the engine applied t1's credit to B first (seq 1)
    out = run_engine_order(records, table, SETTINGS.rules, distance_km, {"B": [(1, "t1")]}, 4)
    decided = {d.payment_id: (d.decision, d.reasons, d.seq) for d in out.decisions}
    assert decided["b1"] == ("approved", (), 2)
    assert [(b.account, b.cause, b.seq) for b in out.balances if b.account == "B"] == [("B", "t1", 1), ("B", "b1", 2)]
    assert out.notes == []
    late = run_engine_order(records, table, SETTINGS.rules, distance_km, {"B": [(2, "t1")]}, 4)
    assert {d.payment_id: d.reasons for d in late.decisions}["b1"] == ("insufficient_funds",)


def test_a_command_older_than_the_horizon_is_declined_and_counts_in_no_window() -> None:
    """RULES.md stage 1, `outside_horizon`: a3 is older than max_ts - horizon, so it is declined
    (its id can no longer be checked) and a4, in time, is not reviewed for velocity."""
    settings = load(environ={}, rules={"duplicate": {"horizon_ms": 1000}, "velocity": {"max_authorizations": 1},
                                         "event_time": NARROW})
    payments = [command("deposit", "d1", "A", 10_000, T0),
                command("authorize", "a1", "A", 10, T0, country="DE"),
                command("authorize", "a2", "A", 10, T0 + 10_000_000, country="DE"),
                command("authorize", "a3", "A", 10, T0 + 1, country="DE")]  # late: past the horizon
    later = command("authorize", "a4", "A", 10, T0 + 10_000_000 + 600_001, country="DE")
    out = run(payments + [later], settings=settings)
    assert outcomes(out)[-2:] == [("a3", "declined", ("outside_horizon",)), ("a4", "approved", ())]
    assert [d.seq for d in out.decisions][-2:] == [4, 5]
    in_time = run(payments[:2] + payments[3:], settings=settings)
    assert outcomes(in_time)[-1] == ("a3", "review", ("velocity",))


def test_the_model_dead_letters_a_ts_outside_the_event_time_bounds_of_its_kafka_timestamp() -> None:
    good = command("deposit", "p1", "A", 5, T0)
    inside = InputRecord("payments", 0, 0, b"A", good, timestamp=T0)
    future = InputRecord("payments", 0, 1, b"A", command("deposit", "p2", "A", 5, T0 * 1000), timestamp=T0)
    unstamped = InputRecord("payments", 0, 2, b"A", command("deposit", "p3", "A", 5, T0 * 1000))
    commands, invalid = split_payments([inside, future, unstamped], None, (300_000, 86_400_000))
    assert [c.payment_id for c in commands] == ["p1", "p3"]
    assert [i.reason for i in invalid] == ["ts_out_of_range"]


def test_the_model_declines_an_authorization_that_already_exists() -> None:
    settings = load(environ={}, rules={"duplicate": {"horizon_ms": 1000}, "event_time": NARROW})
    out = run([command("deposit", "d0", "A", 10_000, T0), command("authorize", "a1", "A", 400, T0, country="FR"),
               command("deposit", "d1", "A", 5, T0 + 1_500),  # a1's id is past the horizon, a1 still open
               command("capture", "c1", "A", 400, T0 + 1_400, auth_id="a1"),
               command("authorize", "a1", "A", 400, T0 + 1_450, country="FR"),
               command("capture", "c2", "A", 400, T0 + 1_460, auth_id="a1"),
               command("capture", "c1", "A", 400, T0 + 1_400, auth_id="a1")], settings=settings)
    assert outcomes(out)[-2:] == [("a1", "declined", ("authorization_exists",)),
                                  ("c2", "declined", ("authorization_closed",))]
    assert out.duplicates == 1  # c1 re-sent as it was, still remembered
    assert balance(out, "A") == (10_000 + 5 - 400, 0)


def test_the_model_forgets_a_closed_authorization_once_its_close_leaves_the_horizon() -> None:
    settings = load(environ={}, rules={"duplicate": {"horizon_ms": 1000}, "event_time": NARROW})
    out = run([command("deposit", "d0", "A", 10_000, T0), command("authorize", "a1", "A", 400, T0, country="FR"),
               command("capture", "c1", "A", 400, T0 + 100, auth_id="a1"),
               command("refund", "r1", "A", 50, T0 + 1_100, auth_id="a1"),  # the capture is 1_000 ms old
               command("refund", "r2", "A", 50, T0 + 1_101, auth_id="a1"),
               command("authorize", "a1", "A", 700, T0 + 1_102, country="FR"),
               command("capture", "c2", "A", 700, T0 + 1_103, auth_id="a1")], settings=settings)
    assert outcomes(out)[-4:] == [("r1", "approved", ()), ("r2", "declined", ("unknown_authorization",)),
                                  ("a1", "approved", ()), ("c2", "approved", ())]
    assert balance(out, "A") == (10_000 - 400 + 50 - 700, 0)
