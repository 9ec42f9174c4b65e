"""The seven payment rules of docs/RULES.md, each a named unit with its own settings.

Every rule is a plain function over (command, account state, customer, its settings) that
returns a reason code, an alert, or nothing. The thresholds come from
`paystream.settings.RuleSettings` (and the per-customer limits from `customer-status`); none is
written here. The reason codes below are part of the wire contract: never rename one.

>>> from paystream.settings import FundsRule
>>> from operators.accounts import AccountState
>>> exceeds_funds(500, AccountState(posted=400), FundsRule())
True
"""

from __future__ import annotations

from typing import Final

from msgspec import Struct

from operators.accounts import AccountState, daily_spend, recent_authorizations, remembered_ts
from paystream.geo import distance_km
from paystream.settings import (
    CustomerRule,
    DailyLimitRule,
    DuplicateRule,
    FundsRule,
    ImpossibleTravelRule,
    SingleLimitRule,
    VelocityRule,
)
from paystream.wire import Authorize, CustomerStatus

# --- stable reason codes --------------------------------------------------------------------
DUPLICATE_PAYMENT_ID: Final = "duplicate_payment_id"  # a metric, never a decision
UNKNOWN_CUSTOMER: Final = "unknown_customer"
CUSTOMER_BLOCKED: Final = "customer_blocked"
KYC_NOT_VERIFIED: Final = "kyc_not_verified"
UNKNOWN_RECIPIENT: Final = "unknown_recipient"
RECIPIENT_NOT_ALLOWED: Final = "recipient_not_allowed"
CURRENCY_MISMATCH: Final = "currency_mismatch"
UNKNOWN_AUTHORIZATION: Final = "unknown_authorization"
AUTHORIZATION_CLOSED: Final = "authorization_closed"
CAPTURE_EXCEEDS_HOLD: Final = "capture_exceeds_hold"
AUTHORIZATION_NOT_CAPTURED: Final = "authorization_not_captured"
REFUND_EXCEEDS_CAPTURED: Final = "refund_exceeds_captured"
TRANSFER_TO_SELF: Final = "transfer_to_self"
AUTHORIZATION_EXISTS: Final = "authorization_exists"
OUTSIDE_HORIZON: Final = "outside_horizon"  # older than the duplicate horizon: cannot be checked for a re-send
SINGLE_LIMIT_EXCEEDED: Final = "single_limit_exceeded"
DAILY_LIMIT_EXCEEDED: Final = "daily_limit_exceeded"
INSUFFICIENT_FUNDS: Final = "insufficient_funds"
RULE_ERROR: Final = "rule_error"  # a rule raised on this command: declined (fail closed), a copy dead-lettered
# review rules: the reason code is also the alert's `rule`
VELOCITY: Final = "velocity"
IMPOSSIBLE_TRAVEL: Final = "impossible_travel"

_MS_PER_HOUR: Final = 3_600_000
_MS_PER_MINUTE: Final = 60_000
_MAX_SCORE: Final = 100
_BASE_SCORE: Final = 50


class Alert(Struct, frozen=True, gc=False):
    """A review rule that fired: its name, score (0–100) and evidence."""

    rule: str
    score: int
    evidence: dict[str, int | str]


def is_duplicate(account: AccountState, payment_id: str, settings: DuplicateRule) -> bool:
    """`DuplicateRule`: is `payment_id` still remembered (within `horizon_ms` of the newest ts)?"""
    seen_at = account.payment_ids.get(payment_id)
    if seen_at is None:
        if account.spill is None:
            return False
        seen_at = remembered_ts(account, payment_id)
        if seen_at is None:
            return False
    return seen_at >= account.newest_ts - settings.horizon_ms


def customer_refusal(customer: CustomerStatus | None, settings: CustomerRule) -> str | None:
    """`CustomerRule`: why the account's own customer may not pay, or None if it may."""
    if not settings.enabled:
        return None
    if customer is None:
        return UNKNOWN_CUSTOMER
    if customer.blocked:
        return CUSTOMER_BLOCKED
    if customer.kyc != "verified":
        return KYC_NOT_VERIFIED
    return None


def recipient_refusal(recipient: CustomerStatus | None, settings: CustomerRule) -> str | None:
    """`CustomerRule` for a transfer's `to_account`: why it may not receive, or None."""
    if not settings.enabled:
        return None
    if recipient is None:
        return UNKNOWN_RECIPIENT
    if recipient.blocked or recipient.kyc != "verified":
        return RECIPIENT_NOT_ALLOWED
    return None


def exceeds_single_limit(amount: int, customer: CustomerStatus | None, settings: SingleLimitRule) -> bool:
    """`SingleLimitRule` (`single_limit_exceeded`): one debit above the customer's `single_limit`,
    or above `max_amount` when that is set."""
    if not settings.enabled or customer is None:
        return False
    return amount > customer.single_limit or 0 < settings.max_amount < amount


def exceeds_daily_limit(
    amount: int, ts: int, account: AccountState, customer: CustomerStatus | None, settings: DailyLimitRule,
    horizon_ms: int,
) -> bool:
    """`DailyLimitRule` (`daily_limit_exceeded`): this debit plus the window's approved debits above `daily_limit`."""
    if not settings.enabled or customer is None:
        return False
    return amount + daily_spend(account, ts, settings.window_ms, horizon_ms) > customer.daily_limit


def exceeds_funds(amount: int, account: AccountState, settings: FundsRule) -> bool:
    """`FundsRule` (`insufficient_funds`): a debit above the available balance (posted − held)."""
    return settings.enabled and amount > account.posted - account.held


def velocity_alert(command: Authorize, account: AccountState, settings: VelocityRule, horizon_ms: int) -> Alert | None:
    """`VelocityRule` (`velocity`): the (K+1)-th or later authorization within `window_ms`."""
    if not settings.enabled:
        return None
    count = 1 + recent_authorizations(account, command.ts, settings.window_ms, horizon_ms)
    limit = settings.max_authorizations
    if count <= limit:
        return None
    score = min(_MAX_SCORE, _BASE_SCORE + 10 * (count - limit))
    return Alert(VELOCITY, score, {"count": count, "window_ms": settings.window_ms, "limit": limit})


def travel_alert(command: Authorize, account: AccountState, settings: ImpossibleTravelRule) -> Alert | None:
    """`ImpossibleTravelRule` (`impossible_travel`): from the last card use to here faster than `max_speed_kmh`."""
    previous = account.last_country
    country = command.country
    if not settings.enabled or not previous or previous == country:
        return None
    distance = distance_km(previous, country)
    if distance is None:
        return None
    elapsed = max(abs(command.ts - account.last_use_ts), 1)
    speed = distance * _MS_PER_HOUR // elapsed
    limit = settings.max_speed_kmh
    if speed <= limit:
        return None
    score = min(_MAX_SCORE, _BASE_SCORE + 50 * (speed - limit) // limit)
    evidence: dict[str, int | str] = {
        "from_country": previous,
        "to_country": country,
        "distance_km": distance,
        "minutes": elapsed // _MS_PER_MINUTE,
        "speed_kmh": speed,
    }
    return Alert(IMPOSSIBLE_TRAVEL, score, evidence)
