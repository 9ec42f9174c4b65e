"""The payment life cycle of docs/RULES.md: one command against one account → one `Outcome`.

Pure: the account state is mutated in place, everything to be written is returned, and
nothing here knows about Kafka, Bytewax or the clock.

Order of checks (the first stage that declines ends it): duplicate → outside the horizon →
customer → currency → life cycle → limits and funds (debits) → review rules (authorizations) →
approved. Then the window bookkeeping, then the effects of an approved command.

A rule that raises (`operators.rules`, or the customer and recipient checks) declines the
command with `rule_error`, fail closed: it changes the account as any decline at that stage
does (its id is remembered, `seq` counts it) and nothing more, and the outcome carries the
error for the dead-letter copy. Each type's rules run before any of its effects, so a raise
never leaves half an effect behind. Anything else that raises (the books, the state) stops
the worker: the engine cannot know what it left.

>>> from paystream.settings import RuleSettings
>>> from paystream.wire import CustomerStatus, Deposit, SourcePosition
>>> from operators.accounts import AccountState
>>> alice = CustomerStatus(v=1, account="A", kyc="verified", blocked=False, single_limit=10_000,
...                        daily_limit=50_000, home_country="FR", currency="EUR")
>>> account = AccountState()
>>> deposit = Deposit(v=1, payment_id="p1", account="A", amount=500, currency="EUR", ts=1)
>>> outcome = decide(deposit, account, {"A": alice}, RuleSettings(), SourcePosition("payments", 0, 7))
>>> outcome.decision.decision, outcome.balance.posted, account.seq
('approved', 500, 1)
>>> decide(deposit, account, {"A": alice}, RuleSettings(), SourcePosition("payments", 0, 8)).decision is None
True
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Final

from msgspec import Struct

from operators.accounts import (
    CAPTURED,
    CAPTURED_AMOUNT,
    CLOSED_TS,
    HELD,
    OPEN,
    REFUNDED,
    STATE,
    VOIDED,
    AccountState,
    record_card_use,
    record_debit,
    remember_credit,
    remember_payment,
)
from operators.accounts import (
    authorization as find_authorization,
)
from operators.rules import (
    AUTHORIZATION_CLOSED,
    AUTHORIZATION_EXISTS,
    AUTHORIZATION_NOT_CAPTURED,
    CAPTURE_EXCEEDS_HOLD,
    CURRENCY_MISMATCH,
    DAILY_LIMIT_EXCEEDED,
    INSUFFICIENT_FUNDS,
    OUTSIDE_HORIZON,
    REFUND_EXCEEDS_CAPTURED,
    RULE_ERROR,
    SINGLE_LIMIT_EXCEEDED,
    TRANSFER_TO_SELF,
    UNKNOWN_AUTHORIZATION,
    Alert,
    customer_refusal,
    exceeds_daily_limit,
    exceeds_funds,
    exceeds_single_limit,
    is_duplicate,
    recipient_refusal,
    travel_alert,
    velocity_alert,
)
from paystream.settings import RuleSettings
from paystream.wire import (
    Authorize,
    Balance,
    Capture,
    Command,
    Credit,
    CustomerStatus,
    Deposit,
    FraudAlert,
    LedgerEntry,
    PaymentCompleted,
    PaymentDecision,
    Refund,
    SourcePosition,
    Transfer,
    Void,
)

Customers = Mapping[str, CustomerStatus]

TYPE_NAMES: Final[dict[type, str]] = {
    Deposit: "deposit",
    Authorize: "authorize",
    Capture: "capture",
    Void: "void",
    Refund: "refund",
    Transfer: "transfer",
}


class Outcome(Struct, gc=False):
    """Everything one command or credit causes. `decision` is None only for a duplicate (no output at all).

    `ledger` may hold a transfer's credit entry for `to_account` (key it by the entry's
    account); `credit` is the money owed to another account, delivered through the credits topic.
    """

    decision: PaymentDecision | None = None
    ledger: tuple[LedgerEntry, ...] = ()
    balance: Balance | None = None
    alerts: tuple[FraudAlert, ...] = ()
    completed: PaymentCompleted | None = None
    credit: Credit | None = None
    error: str | None = None  # a rule raised: the decision is a `rule_error` decline; this says why


DUPLICATE: Final = Outcome()


class BrokenLedger(RuntimeError):
    """The account's books contradict themselves: stop the worker rather than write wrong money."""


class RuleFailed(Exception):
    """A rule raised while deciding a command (before any of the command's effects).

    >>> try:
    ...     raise RuleFailed(ZeroDivisionError("division by zero"))
    ... except RuleFailed as failed:
    ...     str(failed)
    'ZeroDivisionError: division by zero'
    """

    def __init__(self, error: BaseException) -> None:
        where = ""
        frame = error.__traceback__
        while frame is not None and frame.tb_next is not None:
            frame = frame.tb_next
        if frame is not None:
            where = f" in {frame.tb_frame.f_code.co_name}"
        super().__init__(f"{type(error).__name__}{where}: {error}")


def decide(
    command: Command,
    account: AccountState,
    customers: Customers,
    rules: RuleSettings,
    source: SourcePosition,
) -> Outcome:
    """Decide `command` (read at `source`) against `account`, apply its effects and say what to write."""
    payment_id = command.payment_id
    if payment_id[:1] == "\x00":  # `payment_key`, inline: the hot path
        payment_id = "\x00" + payment_id
    duplicate = rules.duplicate
    if is_duplicate(account, payment_id, duplicate):
        return DUPLICATE
    ts = command.ts
    if ts < account.newest_ts - duplicate.horizon_ms:  # `outside_horizon`: a re-send this old would look new
        account.seq += 1
        return _declined(command, account, source, [OUTSIDE_HORIZON])
    remember_payment(account, payment_id, ts, duplicate.horizon_ms)
    account.seq += 1
    customer = customers.get(command.account)
    try:
        refusal = customer_refusal(customer, rules.customer)
        if refusal is None and customer is not None and command.currency != customer.currency:
            refusal = CURRENCY_MISMATCH
    except MemoryError:
        raise
    except Exception as error:  # noqa: BLE001 - any rule's raise is this command's, not the worker's
        return _rule_failed(command, account, source, RuleFailed(error))
    if refusal is not None:
        return _declined(command, account, source, [refusal])
    # stages 4 to 7 and the effects depend on the type: one function each, chosen by one lookup
    try:
        return _DECIDE_BY_TYPE[type(command)](command, account, customer, customers, rules, source)
    except RuleFailed as failed:
        return _rule_failed(command, account, source, failed)


def apply_credit(credit: Credit, account: AccountState, horizon_ms: int) -> Outcome:
    """Land a transfer's credit on the recipient, whatever its customer row says now (the money already left).

    A credit whose transfer id the account remembers (within `horizon_ms`) landed already: it
    changes nothing and writes nothing (`DUPLICATE`).
    """
    if not remember_credit(account, credit.transfer_id, credit.ts, horizon_ms):
        return DUPLICATE
    account.seq += 1
    account.posted += credit.amount
    if not account.currency:
        account.currency = credit.currency
    return Outcome(balance=_balance(account, credit.account, credit.ts, credit.transfer_id))


# --- stages 4 to 7 and the effects, by type ---------------------------------------------------
# Each takes (command, account, customer, customers, rules, source) and returns the Outcome.


def _deposit(command: Deposit, account: AccountState, customer: CustomerStatus | None, customers: Customers,
             rules: RuleSettings, source: SourcePosition) -> Outcome:
    """Money from outside: nothing to refuse after stage 3; posted grows."""
    account.posted += command.amount
    return _approved(command, account, source, (_ledger_entry(command, command.account, "credit"),), completed=True)


def _authorize(command: Authorize, account: AccountState, customer: CustomerStatus | None, customers: Customers,
               rules: RuleSettings, source: SourcePosition) -> Outcome:
    """Stages 4–7 for an authorization, with its window bookkeeping (the windows hold earlier card uses only).

    Stage 4: an authorization is never overwritten while it counts. A re-sent `authorize` whose id
    the duplicate horizon has forgotten would otherwise reopen a captured hold and let it be
    captured twice.
    """
    horizon_ms = rules.duplicate.horizon_ms
    if ((command.payment_id in account.authorizations or account.spill is not None)
            and find_authorization(account, command.payment_id, horizon_ms) is not None):
        return _declined(command, account, source, [AUTHORIZATION_EXISTS])
    ts = command.ts
    amount = command.amount
    velocity_window_ms = rules.velocity.window_ms
    try:  # every rule first, then the effects: a rule's raise leaves nothing half done
        breaches = _limit_breaches(amount, ts, account, customer, rules)
        if not breaches:
            velocity = velocity_alert(command, account, rules.velocity, horizon_ms)
            travel = travel_alert(command, account, rules.impossible_travel)
    except MemoryError:
        raise
    except Exception as error:  # noqa: BLE001 - any rule's raise is this command's, not the worker's
        raise RuleFailed(error) from error
    if breaches:
        record_card_use(account, command.country, ts, velocity_window_ms, horizon_ms)
        return _declined(command, account, source, breaches)
    record_card_use(account, command.country, ts, velocity_window_ms, horizon_ms)
    if velocity is not None or travel is not None:
        alerts = [alert for alert in (velocity, travel) if alert is not None]
        return Outcome(
            _decision(command, account, source, "review", [alert.rule for alert in alerts]),
            alerts=tuple(_fraud_alert(command, alert) for alert in alerts),
        )
    record_debit(account, ts, amount, rules.daily_limit.window_ms, horizon_ms)
    account.held += amount  # approved: a hold, no money moves yet
    account.authorizations[command.payment_id] = [amount, OPEN, 0, 0, 0]
    return _approved(command, account, source, (), completed=False)


def _capture(command: Capture, account: AccountState, customer: CustomerStatus | None, customers: Customers,
             rules: RuleSettings, source: SourcePosition) -> Outcome:
    """Close an open authorization: debit at most its hold, release the rest."""
    authorization = account.authorizations.get(command.auth_id)
    if authorization is None or authorization[STATE] != OPEN:  # sealed in a page, closed or forgotten
        authorization = find_authorization(account, command.auth_id, rules.duplicate.horizon_ms, change=True)
    if authorization is None:
        return _declined(command, account, source, [UNKNOWN_AUTHORIZATION])
    if authorization[STATE] != OPEN:
        return _declined(command, account, source, [AUTHORIZATION_CLOSED])
    if command.amount > authorization[HELD]:
        return _declined(command, account, source, [CAPTURE_EXCEEDS_HOLD])
    account.held -= authorization[HELD]  # the rest of the hold is released
    account.posted -= command.amount
    authorization[STATE] = CAPTURED
    authorization[CAPTURED_AMOUNT] = command.amount
    authorization[CLOSED_TS] = command.ts
    return _approved(command, account, source, (_ledger_entry(command, command.account, "debit"),), completed=True)


def _void(command: Void, account: AccountState, customer: CustomerStatus | None, customers: Customers,
          rules: RuleSettings, source: SourcePosition) -> Outcome:
    """Release the whole hold of an open authorization (`amount` is informational)."""
    authorization = account.authorizations.get(command.auth_id)
    if authorization is None or authorization[STATE] != OPEN:  # sealed in a page, closed or forgotten
        authorization = find_authorization(account, command.auth_id, rules.duplicate.horizon_ms, change=True)
    if authorization is None:
        return _declined(command, account, source, [UNKNOWN_AUTHORIZATION])
    if authorization[STATE] != OPEN:
        return _declined(command, account, source, [AUTHORIZATION_CLOSED])
    account.held -= authorization[HELD]
    authorization[STATE] = VOIDED
    authorization[CLOSED_TS] = command.ts
    return _approved(command, account, source, (), completed=False)


def _refund(command: Refund, account: AccountState, customer: CustomerStatus | None, customers: Customers,
            rules: RuleSettings, source: SourcePosition) -> Outcome:
    """Credit back part or all of what a captured authorization took (only while it counts: see RULES.md)."""
    authorization = find_authorization(account, command.auth_id, rules.duplicate.horizon_ms, change=True)
    if authorization is None:
        return _declined(command, account, source, [UNKNOWN_AUTHORIZATION])
    if authorization[STATE] != CAPTURED:
        return _declined(command, account, source, [AUTHORIZATION_NOT_CAPTURED])
    if authorization[REFUNDED] + command.amount > authorization[CAPTURED_AMOUNT]:
        return _declined(command, account, source, [REFUND_EXCEEDS_CAPTURED])
    account.posted += command.amount
    authorization[REFUNDED] += command.amount
    return _approved(command, account, source, (_ledger_entry(command, command.account, "credit"),), completed=True)


def _transfer(command: Transfer, account: AccountState, customer: CustomerStatus | None, customers: Customers,
              rules: RuleSettings, source: SourcePosition) -> Outcome:
    """Debit the sender now; the recipient's credit travels through the credits topic."""
    try:  # every rule first, then the effects
        refusal = _transfer_refusal(command, customers, rules)
        breaches = [] if refusal is not None else _limit_breaches(command.amount, command.ts, account, customer, rules)
    except MemoryError:
        raise
    except Exception as error:  # noqa: BLE001 - any rule's raise is this command's, not the worker's
        raise RuleFailed(error) from error
    if refusal is not None:
        return _declined(command, account, source, [refusal])
    if breaches:
        return _declined(command, account, source, breaches)
    record_debit(account, command.ts, command.amount, rules.daily_limit.window_ms, rules.duplicate.horizon_ms)
    account.posted -= command.amount
    outcome = _approved(
        command,
        account,
        source,
        (_ledger_entry(command, command.account, "debit"), _ledger_entry(command, command.to_account, "credit")),
        completed=True,
    )
    outcome.credit = Credit(
        transfer_id=command.payment_id,
        account=command.to_account,
        from_account=command.account,
        amount=command.amount,
        currency=command.currency,
        ts=command.ts,
    )
    return outcome


_DECIDE_BY_TYPE: Final[dict[type, Callable[..., Outcome]]] = {
    Deposit: _deposit,
    Authorize: _authorize,
    Capture: _capture,
    Void: _void,
    Refund: _refund,
    Transfer: _transfer,
}


def _transfer_refusal(command: Transfer, customers: Customers, rules: RuleSettings) -> str | None:
    """Stage 4 of a transfer: the recipient must be someone else, allowed, in the same currency."""
    if command.to_account == command.account:
        return TRANSFER_TO_SELF
    recipient = customers.get(command.to_account)
    refusal = recipient_refusal(recipient, rules.customer)
    if refusal is None and recipient is not None and recipient.currency != command.currency:
        refusal = CURRENCY_MISMATCH
    return refusal


def _limit_breaches(
    amount: int, ts: int, account: AccountState, customer: CustomerStatus | None, rules: RuleSettings
) -> list[str]:
    """Stage 5: every limit or funds rule a debit breaks, in the contract's order."""
    breaches = []
    if exceeds_single_limit(amount, customer, rules.single_limit):
        breaches.append(SINGLE_LIMIT_EXCEEDED)
    if exceeds_daily_limit(amount, ts, account, customer, rules.daily_limit, rules.duplicate.horizon_ms):
        breaches.append(DAILY_LIMIT_EXCEEDED)
    if exceeds_funds(amount, account, rules.funds):
        breaches.append(INSUFFICIENT_FUNDS)
    return breaches


# --- the records -----------------------------------------------------------------------------


def _approved(command: Command, account: AccountState, source: SourcePosition, ledger: tuple[LedgerEntry, ...],
              completed: bool) -> Outcome:
    """The outcome of an approved command: decision, ledger, the new balance and maybe the completed fact."""
    if not account.currency:
        account.currency = command.currency  # the customer's currency (stage 3); set once
    if account.held < 0:
        raise BrokenLedger(f"account {command.account}: held {account.held} < 0 after {command.payment_id}")
    fact = None
    if completed:
        fact = PaymentCompleted(
            payment_id=command.payment_id,
            account=command.account,
            type=TYPE_NAMES[type(command)],
            amount=command.amount,
            currency=command.currency,
            ts=command.ts,
        )
    return Outcome(
        _decision(command, account, source, "approved", []),
        ledger=ledger,
        balance=_balance(account, command.account, command.ts, command.payment_id),
        completed=fact,
    )


def _declined(command: Command, account: AccountState, source: SourcePosition, reasons: list[str]) -> Outcome:
    """The outcome of a declined command: its decision only."""
    return Outcome(_decision(command, account, source, "declined", reasons))


def _rule_failed(command: Command, account: AccountState, source: SourcePosition, failed: RuleFailed) -> Outcome:
    """A rule raised: declined `rule_error` (fail closed), with the error for the dead-letter copy."""
    return Outcome(_decision(command, account, source, "declined", [RULE_ERROR]), error=str(failed))


def _decision(command: Command, account: AccountState, source: SourcePosition, decision: str,
              reasons: list[str]) -> PaymentDecision:
    return PaymentDecision(
        payment_id=command.payment_id,
        account=command.account,
        type=TYPE_NAMES[type(command)],
        amount=command.amount,
        currency=command.currency,
        ts=command.ts,
        decision=decision,  # type: ignore[arg-type]
        reasons=reasons,
        source=source,
        seq=account.seq,
    )


def _balance(account: AccountState, account_id: str, ts: int, cause: str) -> Balance:
    return Balance(
        account=account_id,
        currency=account.currency,
        posted=account.posted,
        held=account.held,
        available=account.posted - account.held,
        ts=ts,
        seq=account.seq,
        cause=cause,
    )


def _ledger_entry(command: Command, account_id: str, direction: str) -> LedgerEntry:
    return LedgerEntry(
        entry_id=f"{command.payment_id}:{direction}",
        payment_id=command.payment_id,
        account=account_id,
        direction=direction,  # type: ignore[arg-type]
        amount=command.amount,
        currency=command.currency,
        ts=command.ts,
    )


def _fraud_alert(command: Authorize, alert: Alert) -> FraudAlert:
    return FraudAlert(
        alert_id=f"{command.payment_id}:{alert.rule}",
        payment_id=command.payment_id,
        account=command.account,
        rule=alert.rule,
        score=alert.score,
        evidence=alert.evidence,
    )
