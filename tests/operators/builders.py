"""Builders for the domain-core tests: customers, commands and a tiny driver."""

from __future__ import annotations

from typing import Any

import msgspec

from operators.accounts import AccountState
from operators.payments import Outcome, apply_credit, decide
from paystream.settings import RuleSettings
from paystream.wire import (
    Authorize,
    Capture,
    Command,
    CustomerStatus,
    Deposit,
    Refund,
    SourcePosition,
    Transfer,
    Void,
)

SOURCE = SourcePosition("payments", 0, 0)


def customer(account: str, **changes: Any) -> CustomerStatus:
    fields: dict[str, Any] = dict(
        v=1, account=account, kyc="verified", blocked=False, single_limit=100_000,
        daily_limit=1_000_000, home_country="FR", currency="EUR",
    )
    fields.update(changes)
    return CustomerStatus(**fields)


def customer_row(account: str, **changes: Any) -> bytes:
    """A `customer-status` record value (no validation on the way: a test may make it hostile)."""
    return msgspec.json.encode(customer(account, **changes))


def deposit(pid: str, amount: int, ts: int = 1_000, account: str = "A", currency: str = "EUR") -> Deposit:
    return Deposit(v=1, payment_id=pid, account=account, amount=amount, currency=currency, ts=ts)


def authorize(pid: str, amount: int, ts: int = 1_000, account: str = "A", country: str = "FR",
              currency: str = "EUR") -> Authorize:
    return Authorize(v=1, payment_id=pid, account=account, amount=amount, currency=currency, ts=ts, country=country)


def capture(pid: str, auth_id: str, amount: int, ts: int = 2_000, account: str = "A") -> Capture:
    return Capture(v=1, payment_id=pid, account=account, amount=amount, currency="EUR", ts=ts, auth_id=auth_id)


def void(pid: str, auth_id: str, ts: int = 2_000, account: str = "A", amount: int = 1) -> Void:
    return Void(v=1, payment_id=pid, account=account, amount=amount, currency="EUR", ts=ts, auth_id=auth_id)


def refund(pid: str, auth_id: str, amount: int, ts: int = 3_000, account: str = "A") -> Refund:
    return Refund(v=1, payment_id=pid, account=account, amount=amount, currency="EUR", ts=ts, auth_id=auth_id)


def transfer(pid: str, to: str, amount: int, ts: int = 1_000, account: str = "A", currency: str = "EUR") -> Transfer:
    return Transfer(v=1, payment_id=pid, account=account, amount=amount, currency=currency, ts=ts, to_account=to)


class Bank:
    """Accounts and customers, with every command decided and every credit applied at once."""

    def __init__(self, rules: RuleSettings | None = None, **customers: CustomerStatus):
        self.rules = rules or RuleSettings()
        self.customers = dict(customers) or {name: customer(name) for name in ("A", "B", "C")}
        self.accounts: dict[str, AccountState] = {}

    def account(self, name: str) -> AccountState:
        return self.accounts.setdefault(name, AccountState())

    def run(self, command: Command) -> Outcome:
        outcome = decide(command, self.account(command.account), self.customers, self.rules, SOURCE)
        if outcome.credit is not None:
            apply_credit(outcome.credit, self.account(outcome.credit.account), self.rules.duplicate.horizon_ms)
        return outcome

    def verdict(self, command: Command) -> tuple[str, list[str]]:
        decision = self.run(command).decision
        assert decision is not None, "a duplicate"
        return decision.decision, decision.reasons
