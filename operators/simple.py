"""The benchmark's simple workload as a paystream task processor (not the wire contract).

Every system in `bench/` implements the same rule, each in its own way: an account starts at
`OPENING_BALANCE`; a payment above `SINGLE_LIMIT` or above the balance is declined, anything
else is approved and debited; one decision and the new balance are written per payment.
This processor plugs into the same transactional task machinery as the payment engine, so the
benchmark measures paystream's exactly-once path, not a shortcut.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any, Final

import msgspec

from paystream.records import InboundRecord, OutboundRecord
from paystream.settings import Settings

OPENING_BALANCE: Final = 1_000_000
SINGLE_LIMIT: Final = 40_000


class SimplePayment(msgspec.Struct, gc=False):
    payment_id: str
    account: str
    amount: int
    ts: int


class SimpleDecision(msgspec.Struct, gc=False):
    v: int
    type: str
    payment_id: str
    account: str
    amount: int
    decision: str
    reason: str | None
    balance: int
    ts: int


class SimpleBalance(msgspec.Struct, gc=False):
    account: str
    balance: int


_decode_many = msgspec.json.Decoder(SimplePayment).decode
_encode = msgspec.json.Encoder().encode


class SimplePaymentsProcessor:
    """Balances per account as plain ints; same surface as `operators.task.TaskProcessor`."""


    def __init__(self, settings: Settings, customers: Mapping[str, Any], accounts: dict[str, int],
                 changed: set[str] | None = None) -> None:
        self.accounts = accounts
        self.changed: set[str] = set() if changed is None else changed
        self.counts: Counter[tuple[str, ...]] = Counter()
        self._decisions = settings.topics.decisions
        self._balances = settings.topics.balances
        self._dlq = settings.topics.dlq

    def process(self, records: list[InboundRecord]) -> list[OutboundRecord]:
        out: list[OutboundRecord] = []
        append = out.append
        accounts, changed = self.accounts, self.changed
        decisions, balances = self._decisions, self._balances
        for record in records:
            try:
                payment = _decode_many(record.value())  # type: ignore[arg-type]  # None raises TypeError: to the DLQ
            except (msgspec.DecodeError, TypeError) as error:
                append((self._dlq, record.key(), record.value(),
                        [("dlq.reason", b"not_json"), ("dlq.error", str(error).encode())]))
                continue
            account = payment.account
            balance = accounts.get(account, OPENING_BALANCE)
            amount = payment.amount
            if amount > SINGLE_LIMIT:
                decision, reason = "declined", "single_limit_exceeded"
            elif amount > balance:
                decision, reason = "declined", "insufficient_funds"
            else:
                decision, reason = "approved", None
                balance -= amount
                accounts[account] = balance
                changed.add(account)
            append((decisions, record.key(), _encode(SimpleDecision(1, "decision", payment.payment_id, account, amount,
                                                                  decision, reason, balance, payment.ts)), None))
            append((balances, record.key(), _encode(SimpleBalance(account, balance)), None))
        return out
