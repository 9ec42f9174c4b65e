"""The payment life cycle of docs/RULES.md, one step and one edge case at a time."""

from __future__ import annotations

from operators.accounts import available
from operators.payments import apply_credit
from paystream.settings import DuplicateRule, RuleSettings, VelocityRule
from paystream.wire import Capture, Credit
from tests.operators.builders import Bank, authorize, capture, customer, deposit, refund, transfer, void


def funded(amount: int = 10_000) -> Bank:
    bank = Bank()
    assert bank.verdict(deposit("d0", amount)) == ("approved", [])
    return bank


def test_deposit_credits_the_account_and_writes_every_record() -> None:
    bank = Bank()
    outcome = bank.run(deposit("d1", 700, ts=5))
    assert outcome.decision is not None and outcome.decision.seq == 1 and outcome.decision.reasons == []
    assert [(e.entry_id, e.account, e.direction, e.amount) for e in outcome.ledger] == [
        ("d1:credit", "A", "credit", 700)]
    assert outcome.balance is not None
    assert (outcome.balance.posted, outcome.balance.held, outcome.balance.available) == (700, 0, 700)
    assert (outcome.balance.seq, outcome.balance.cause, outcome.balance.ts, outcome.balance.currency) == (
        1, "d1", 5, "EUR")
    assert outcome.completed is not None and outcome.completed.type == "deposit"
    assert outcome.credit is None and outcome.alerts == ()


def test_authorize_holds_without_posting_or_completing() -> None:
    bank = funded(1_000)
    outcome = bank.run(authorize("a1", 400))
    assert outcome.decision is not None and outcome.decision.decision == "approved"
    assert outcome.ledger == () and outcome.completed is None
    assert outcome.balance is not None
    assert (outcome.balance.posted, outcome.balance.held, outcome.balance.available) == (1_000, 400, 600)


def test_capture_debits_the_amount_and_releases_the_whole_hold() -> None:
    bank = funded(1_000)
    bank.run(authorize("a1", 400))
    outcome = bank.run(capture("c1", "a1", 300))
    assert outcome.decision is not None and outcome.decision.decision == "approved"
    assert [(e.entry_id, e.direction, e.amount) for e in outcome.ledger] == [("c1:debit", "debit", 300)]
    account = bank.account("A")
    assert (account.posted, account.held, available(account)) == (700, 0, 700)
    assert outcome.completed is not None and outcome.completed.amount == 300


def test_capture_more_than_held_is_declined() -> None:
    bank = funded(1_000)
    bank.run(authorize("a1", 400))
    assert bank.verdict(capture("c1", "a1", 401)) == ("declined", ["capture_exceeds_hold"])
    assert bank.account("A").held == 400


def test_second_capture_and_void_after_capture_are_declined() -> None:
    bank = funded(1_000)
    bank.run(authorize("a1", 400))
    bank.run(capture("c1", "a1", 400))
    assert bank.verdict(capture("c2", "a1", 1)) == ("declined", ["authorization_closed"])
    assert bank.verdict(void("v1", "a1")) == ("declined", ["authorization_closed"])
    assert bank.account("A").posted == 600


def test_void_releases_the_hold_and_then_the_authorization_is_closed() -> None:
    bank = funded(1_000)
    bank.run(authorize("a1", 400))
    outcome = bank.run(void("v1", "a1", amount=5))
    assert outcome.decision is not None and outcome.decision.decision == "approved"
    assert outcome.ledger == () and outcome.completed is None
    assert (bank.account("A").posted, bank.account("A").held) == (1_000, 0)
    assert bank.verdict(void("v2", "a1")) == ("declined", ["authorization_closed"])
    assert bank.verdict(capture("c1", "a1", 1)) == ("declined", ["authorization_closed"])
    assert bank.verdict(refund("r1", "a1", 1)) == ("declined", ["authorization_not_captured"])


def test_unknown_authorizations_are_declined() -> None:
    bank = funded()
    for command in (capture("c1", "nope", 1), void("v1", "nope"), refund("r1", "nope", 1)):
        assert bank.verdict(command) == ("declined", ["unknown_authorization"])


def test_an_authorization_of_another_account_is_unknown_here() -> None:
    bank = funded()
    bank.run(deposit("d9", 1_000, account="B"))
    bank.run(authorize("a1", 10, account="B"))
    assert bank.verdict(capture("c1", "a1", 10)) == ("declined", ["unknown_authorization"])


def test_refund_up_to_the_captured_amount_over_several_refunds() -> None:
    bank = funded(1_000)
    bank.run(authorize("a1", 400))
    assert bank.verdict(refund("r0", "a1", 1)) == ("declined", ["authorization_not_captured"])
    bank.run(capture("c1", "a1", 300))
    outcome = bank.run(refund("r1", "a1", 200))
    assert [(e.entry_id, e.direction) for e in outcome.ledger] == [("r1:credit", "credit")]
    assert outcome.completed is not None and outcome.completed.type == "refund"
    assert bank.verdict(refund("r2", "a1", 101)) == ("declined", ["refund_exceeds_captured"])
    assert bank.verdict(refund("r3", "a1", 100)) == ("approved", [])
    assert bank.verdict(refund("r4", "a1", 1)) == ("declined", ["refund_exceeds_captured"])
    assert bank.account("A").posted == 1_000


def test_a_reviewed_or_declined_authorization_cannot_be_captured() -> None:
    bank = funded(100)
    assert bank.verdict(authorize("a1", 500)) == ("declined", ["insufficient_funds"])
    assert bank.verdict(capture("c1", "a1", 1)) == ("declined", ["unknown_authorization"])


def test_transfer_debits_the_sender_and_owes_the_recipient() -> None:
    bank = funded(1_000)
    outcome = bank.run(transfer("t1", "B", 300, ts=77))
    assert [(e.entry_id, e.account, e.direction, e.amount) for e in outcome.ledger] == [
        ("t1:debit", "A", "debit", 300),
        ("t1:credit", "B", "credit", 300),
    ]
    assert outcome.credit is not None
    assert (outcome.credit.transfer_id, outcome.credit.account, outcome.credit.from_account) == ("t1", "B", "A")
    assert outcome.completed is not None and outcome.completed.account == "A"
    assert bank.account("A").posted == 700 and bank.account("B").posted == 300
    assert bank.account("B").seq == 1


def test_transfer_to_self_unknown_or_blocked_recipient_is_declined() -> None:
    bank = Bank(A=customer("A"), B=customer("B", blocked=True), C=customer("C", kyc="pending"),
                D=customer("D", currency="USD"))
    bank.run(deposit("d0", 1_000))
    assert bank.verdict(transfer("t1", "A", 1)) == ("declined", ["transfer_to_self"])
    assert bank.verdict(transfer("t2", "Z", 1)) == ("declined", ["unknown_recipient"])
    assert bank.verdict(transfer("t3", "B", 1)) == ("declined", ["recipient_not_allowed"])
    assert bank.verdict(transfer("t4", "C", 1)) == ("declined", ["recipient_not_allowed"])
    assert bank.verdict(transfer("t5", "D", 1)) == ("declined", ["currency_mismatch"])
    assert bank.account("A").posted == 1_000 and "Z" not in bank.accounts


def test_customer_checks_come_before_currency_and_life_cycle() -> None:
    bank = Bank(A=customer("A", blocked=True))
    assert bank.verdict(capture("c1", "nope", 1, account="A")) == ("declined", ["customer_blocked"])
    assert bank.verdict(deposit("d1", 1, account="Q")) == ("declined", ["unknown_customer"])
    bank = Bank(A=customer("A", kyc="pending"))
    assert bank.verdict(deposit("d1", 1)) == ("declined", ["kyc_not_verified"])


def test_currency_mismatch_is_declined_before_the_life_cycle() -> None:
    bank = funded()
    assert bank.verdict(deposit("d1", 5, currency="USD")) == ("declined", ["currency_mismatch"])
    usd_capture = Capture(v=1, payment_id="c1", account="A", amount=1, currency="USD", ts=1, auth_id="nope")
    assert bank.verdict(usd_capture) == ("declined", ["currency_mismatch"])


def test_every_failing_limit_is_listed_in_order() -> None:
    bank = Bank(A=customer("A", single_limit=100, daily_limit=150), B=customer("B"))
    bank.run(deposit("d0", 50))
    assert bank.verdict(authorize("a1", 200)) == (
        "declined", ["single_limit_exceeded", "daily_limit_exceeded", "insufficient_funds"])
    assert bank.verdict(transfer("t1", "B", 200)) == (
        "declined", ["single_limit_exceeded", "daily_limit_exceeded", "insufficient_funds"])
    assert bank.verdict(authorize("a2", 50)) == ("approved", [])


def test_the_daily_window_holds_approved_debits_only() -> None:
    bank = Bank(A=customer("A", daily_limit=1_000), B=customer("B"))
    bank.run(deposit("d0", 10_000))
    assert bank.verdict(authorize("a1", 600)) == ("approved", [])
    assert bank.verdict(transfer("t1", "B", 500)) == ("declined", ["daily_limit_exceeded"])  # not recorded
    assert bank.verdict(transfer("t2", "B", 400)) == ("approved", [])
    assert bank.verdict(authorize("a2", 1)) == ("declined", ["daily_limit_exceeded"])
    bank.run(void("v1", "a1"))  # releasing the hold does not give the spend back
    assert bank.verdict(authorize("a3", 1, ts=1_000 + 86_400_000)) == ("approved", [])  # a1, t2 left the window


def test_review_moves_no_money_and_raises_one_alert_per_rule() -> None:
    rules = RuleSettings(velocity=VelocityRule(max_authorizations=1, window_ms=60_000))
    bank = Bank(rules)
    bank.run(deposit("d0", 10_000))
    assert bank.verdict(authorize("a1", 10, ts=1_000, country="FR")) == ("approved", [])
    outcome = bank.run(authorize("a2", 10, ts=2_000, country="JP"))
    assert outcome.decision is not None
    assert (outcome.decision.decision, outcome.decision.reasons) == ("review", ["velocity", "impossible_travel"])
    assert [(a.alert_id, a.rule) for a in outcome.alerts] == [
        ("a2:velocity", "velocity"), ("a2:impossible_travel", "impossible_travel")]
    assert outcome.balance is None and outcome.ledger == () and bank.account("A").held == 10
    assert bank.verdict(capture("c2", "a2", 10)) == ("declined", ["unknown_authorization"])
    # the reviewed authorization still counts for velocity and is the last card use
    third = bank.run(authorize("a3", 10, ts=3_000, country="JP"))
    assert third.decision is not None and third.decision.reasons == ["velocity"]
    assert third.alerts[0].evidence["count"] == 3


def test_declined_at_limits_still_counts_as_card_use_but_not_when_declined_earlier() -> None:
    rules = RuleSettings(velocity=VelocityRule(max_authorizations=1, window_ms=60_000))
    bank = Bank(rules, A=customer("A", single_limit=100), B=customer("B"))
    bank.run(deposit("d0", 10_000))
    assert bank.verdict(authorize("a1", 500, ts=1_000)) == ("declined", ["single_limit_exceeded"])
    assert bank.verdict(authorize("a2", 5, ts=1_001, currency="USD")) == ("declined", ["currency_mismatch"])
    assert bank.account("A").auth_times == [1_000]
    assert bank.verdict(authorize("a3", 5, ts=1_002)) == ("review", ["velocity"])


def test_out_of_order_event_times_follow_the_window_formulas() -> None:
    rules = RuleSettings(velocity=VelocityRule(max_authorizations=2, window_ms=600_000))
    bank = Bank(rules)
    bank.run(deposit("d0", 10_000, ts=0))
    assert bank.verdict(authorize("a1", 1, ts=0)) == ("approved", [])
    assert bank.verdict(authorize("a2", 1, ts=660_000)) == ("approved", [])
    # late: (0, 300_000] holds a1 only, and a2 is in the future of it
    assert bank.verdict(authorize("a3", 1, ts=300_000)) == ("approved", [])
    assert bank.verdict(authorize("a4", 1, ts=300_001)) == ("review", ["velocity"])


def test_duplicate_payment_id_gets_no_second_decision_and_no_effect() -> None:
    bank = funded(1_000)
    bank.run(transfer("t1", "B", 100))
    before = (bank.account("A").posted, bank.account("A").seq, bank.account("B").posted)
    outcome = bank.run(transfer("t1", "B", 100))
    assert outcome.decision is None and outcome.ledger == () and outcome.balance is None and outcome.credit is None
    assert (bank.account("A").posted, bank.account("A").seq, bank.account("B").posted) == before
    # the id is per payment, whatever the type of the re-sent command
    assert bank.run(deposit("t1", 5)).decision is None
    # a declined command is remembered too
    assert bank.verdict(capture("c1", "nope", 1)) == ("declined", ["unknown_authorization"])
    assert bank.run(capture("c1", "nope", 1)).decision is None


def test_the_same_payment_id_on_another_account_is_not_a_duplicate() -> None:
    bank = funded()
    assert bank.verdict(deposit("d0", 5, account="B")) == ("approved", [])


def test_idempotency_horizon_eviction() -> None:
    day = 86_400_000
    bank = Bank(RuleSettings(duplicate=DuplicateRule(horizon_ms=day)))
    bank.run(deposit("d1", 100, ts=0))
    bank.run(deposit("d2", 100, ts=day))
    assert bank.run(deposit("d1", 100, ts=day)).decision is None  # 0 >= day - day: still remembered
    bank.run(deposit("d3", 100, ts=day + 1))
    outcome = bank.run(deposit("d1", 100, ts=day + 2))
    assert outcome.decision is not None and outcome.decision.decision == "approved"  # forgotten: a new payment
    assert bank.account("A").posted == 400
    # and the memory goes too, in a batch once an eighth of the horizon is overdue
    bank.run(deposit("d4", 100, ts=2 * day + day // 8 + 1))
    assert set(bank.account("A").payment_ids) == {"d4"}


def test_seq_counts_decisions_and_credits() -> None:
    bank = funded()
    bank.run(deposit("d1", 1, account="B"))
    bank.run(transfer("t1", "B", 10))
    outcome = bank.run(capture("c1", "nope", 1, account="B"))
    assert outcome.decision is not None and outcome.decision.seq == 3  # deposit, credit, this
    assert bank.account("A").seq == 2


def test_a_credit_lands_whatever_the_recipient_customer_says() -> None:
    bank = Bank(A=customer("A"))
    account = bank.account("B")
    outcome = apply_credit(Credit(transfer_id="t9", account="B", from_account="A", amount=50, currency="EUR", ts=9),
                           account, bank.rules.duplicate.horizon_ms)
    assert outcome.balance is not None
    assert (outcome.balance.posted, outcome.balance.cause, outcome.balance.ts, outcome.balance.seq) == (50, "t9", 9, 1)
    assert account.currency == "EUR" and outcome.decision is None


def test_a_credit_read_twice_lands_once() -> None:
    """The recipient remembers applied transfer ids: a credit re-read (its offset lost) changes nothing."""
    bank = Bank(A=customer("A"))
    account = bank.account("B")
    credit = Credit(transfer_id="t9", account="B", from_account="A", amount=50, currency="EUR", ts=9)
    horizon = bank.rules.duplicate.horizon_ms
    assert apply_credit(credit, account, horizon).balance is not None
    assert apply_credit(credit, account, horizon).balance is None
    assert (account.posted, account.seq) == (50, 1)


def test_a_transfer_id_never_meets_a_command_id() -> None:
    """A command whose id spells the recipient's credit key is not a duplicate of the credit, nor the reverse."""
    bank = Bank(A=customer("A"), B=customer("B"))
    bank.run(deposit("d1", 100))
    bank.run(transfer("t1", "B", 40))
    assert bank.verdict(deposit("\x00\x01t1", 5, account="B")) == ("approved", [])
    assert bank.verdict(deposit("\x00\x01t2", 5, account="B")) == ("approved", [])
    credit = Credit(transfer_id="t2", account="B", from_account="A", amount=7, currency="EUR", ts=3)
    assert apply_credit(credit, bank.account("B"), bank.rules.duplicate.horizon_ms).balance is not None
    assert bank.account("B").posted == 40 + 5 + 5 + 7


def test_account_currency_is_set_once() -> None:
    bank = Bank(A=customer("A"))
    bank.run(deposit("d1", 10))
    bank.customers["A"] = customer("A", currency="USD")
    outcome = bank.run(deposit("d2", 10, currency="USD"))
    assert outcome.balance is not None and outcome.balance.currency == "EUR"


def test_a_resent_authorization_past_the_horizon_never_reopens_a_captured_one() -> None:
    """Hazard: after the duplicate horizon a re-sent `authorize` replaced the captured
    authorization with a fresh open one, and a second capture of it charged the card twice."""
    bank = Bank(RuleSettings(duplicate=DuplicateRule(horizon_ms=1_000)))
    assert bank.verdict(deposit("d0", 10_000, ts=1_000)) == ("approved", [])
    bank.run(authorize("a1", 400, ts=1_000))
    assert bank.verdict(capture("c1", "a1", 400, ts=1_100)) == ("approved", [])
    bank.run(deposit("d1", 5, ts=10_000))  # the horizon moves past a1 and c1

    # replayed as they were: older than the horizon, so they can no longer be checked
    assert bank.verdict(authorize("a1", 400, ts=1_000)) == ("declined", ["outside_horizon"])
    assert bank.verdict(capture("c1", "a1", 400, ts=1_100)) == ("declined", ["outside_horizon"])
    account = bank.account("A")
    assert (account.posted, account.held) == (10_000 - 400 + 5, 0)


def test_an_authorization_id_re_used_while_the_authorization_counts_is_declined() -> None:
    """Within the horizon of its capture, an authorization is never replaced (even when its id
    was forgotten), and a second capture of it is `authorization_closed`."""
    bank = Bank(RuleSettings(duplicate=DuplicateRule(horizon_ms=1_000)))
    bank.run(deposit("d0", 10_000, ts=1_000))
    bank.run(authorize("a1", 400, ts=1_000))
    bank.run(deposit("d1", 5, ts=2_500))  # a1's id is past the horizon; the authorization is open
    assert bank.verdict(capture("c1", "a1", 400, ts=2_400)) == ("approved", [])
    assert bank.verdict(authorize("a1", 400, ts=2_450)) == ("declined", ["authorization_exists"])
    assert bank.verdict(capture("c2", "a1", 400, ts=2_500)) == ("declined", ["authorization_closed"])
    assert bank.verdict(refund("r1", "a1", 100, ts=2_600)) == ("approved", [])
    account = bank.account("A")
    assert (account.posted, account.held) == (10_000 + 5 - 400 + 100, 0)


def test_a_closed_authorization_is_forgotten_once_its_close_leaves_the_horizon() -> None:
    """RULES.md clarifications: a capture, void or refund of it is then `unknown_authorization`,
    an open one is never forgotten, and an `authorize` may use the id again."""
    bank = Bank(RuleSettings(duplicate=DuplicateRule(horizon_ms=1_000)))
    bank.run(deposit("d0", 10_000, ts=1_000))
    bank.run(authorize("a1", 400, ts=1_000))
    bank.run(authorize("a2", 300, ts=1_001))
    bank.run(capture("c1", "a1", 400, ts=1_100))
    assert bank.verdict(refund("r1", "a1", 50, ts=2_100)) == ("approved", [])  # 1_100 >= 2_100 - 1_000
    assert bank.verdict(refund("r2", "a1", 50, ts=2_101)) == ("declined", ["unknown_authorization"])
    assert bank.verdict(capture("c2", "a2", 300, ts=2_102)) == ("approved", [])  # open: never forgotten
    assert bank.verdict(authorize("a1", 700, ts=2_103)) == ("approved", [])  # a new authorization
    assert bank.verdict(capture("c3", "a1", 700, ts=2_104)) == ("approved", [])
    account = bank.account("A")
    assert (account.posted, account.held) == (10_000 - 400 + 50 - 300 - 700, 0)
    assert set(account.authorizations) <= {"a1", "a2"}
