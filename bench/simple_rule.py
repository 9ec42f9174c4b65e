"""The benchmark's one payment rule, shared by every Python runner (stdlib only, so the Quix
Streams runner can import it from its own virtual environment).

Each account starts at `OPENING_BALANCE`; a payment above `SINGLE_LIMIT` or above the balance is
declined, anything else is approved and debited. Kafka Streams has the same rule in Java
(bench/kstreams/.../SimplePayments.java).

>>> decide(1_000_000, 500)
('approved', None, 999500)
>>> decide(1_000_000, 40_001)
('declined', 'single_limit_exceeded', 1000000)
>>> decide(300, 500)
('declined', 'insufficient_funds', 300)
"""

from __future__ import annotations

OPENING_BALANCE = 1_000_000
SINGLE_LIMIT = 40_000


def decide(balance: int, amount: int) -> tuple[str, str | None, int]:
    """Return (decision, reason, new balance) for one payment of `amount` against `balance`."""
    if amount > SINGLE_LIMIT:
        return "declined", "single_limit_exceeded", balance
    if amount > balance:
        return "declined", "insufficient_funds", balance
    return "approved", None, balance - amount


def decision_record(payment: dict, decision: str, reason: str | None, balance: int) -> dict:
    """The `decisions` value for one payment: the input's ids, amount and `ts` copied through."""
    return {
        "v": 1,
        "type": "decision",
        "payment_id": payment["payment_id"],
        "account": payment["account"],
        "amount": payment["amount"],
        "decision": decision,
        "reason": reason,
        "balance": balance,
        "ts": payment["ts"],
    }
