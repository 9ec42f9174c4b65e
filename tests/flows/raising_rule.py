"""The payment flow with a velocity rule that raises on some authorizations (for `rule_error`).

`python -m bytewax.run tests.flows.raising_rule:flow`: the engine's own flow, except that the
velocity rule raises, with a card number in its message, on every authorization whose payment
id ends in "7". Only a process that asks for `flow` gets the raising rule; the tests' own
process never imports it.
"""

from __future__ import annotations

from typing import Any

import operators.payments as payments
from operators.rules import velocity_alert

CARD = "4111111111111111"


def _velocity_that_raises(command: Any, *args: Any) -> Any:
    if command.payment_id.endswith("7"):
        raise ValueError(f"cannot score card {CARD} of payment {command.payment_id}")
    return velocity_alert(command, *args)


def __getattr__(name: str) -> Any:
    """`flow`, built when Bytewax asks for it (importing this module in a test changes nothing)."""
    if name != "flow":
        raise AttributeError(name)
    payments.velocity_alert = _velocity_that_raises  # type: ignore[assignment]
    import flows.payments

    return flows.payments.flow
