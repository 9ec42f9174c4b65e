"""Each of the seven rules on its own, against hand-built account state."""

from __future__ import annotations

from operators import rules
from operators.accounts import AccountState, record_card_use, record_debit, remember_payment
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
from tests.operators.builders import authorize, customer

HORIZON = DuplicateRule().horizon_ms


def test_duplicate_rule_remembers_ids_until_the_horizon_passes() -> None:
    account = AccountState()
    settings = DuplicateRule(horizon_ms=1_000)
    remember_payment(account, "p1", 5_000, settings.horizon_ms)
    assert rules.is_duplicate(account, "p1", settings)
    assert not rules.is_duplicate(account, "p2", settings)
    remember_payment(account, "p2", 6_000, settings.horizon_ms)  # p1 is exactly at the horizon: kept
    assert rules.is_duplicate(account, "p1", settings)
    remember_payment(account, "p3", 6_001, settings.horizon_ms)  # now 5_000 < 6_001 - 1_000
    assert not rules.is_duplicate(account, "p1", settings)
    remember_payment(account, "p4", 6_126, settings.horizon_ms)  # an eighth of the horizon later
    assert set(account.payment_ids) == {"p2", "p3", "p4"}  # the memory is gone too


def test_duplicate_rule_forgets_a_late_old_id_at_once() -> None:
    account = AccountState()
    settings = DuplicateRule(horizon_ms=1_000)
    remember_payment(account, "new", 10_000, settings.horizon_ms)
    remember_payment(account, "old", 8_000, settings.horizon_ms)
    assert not rules.is_duplicate(account, "old", settings)
    assert rules.is_duplicate(account, "new", settings)


def test_customer_rule_declines_unknown_then_blocked_then_unverified() -> None:
    settings = CustomerRule()
    assert rules.customer_refusal(None, settings) == rules.UNKNOWN_CUSTOMER
    assert rules.customer_refusal(customer("A", blocked=True, kyc="pending"), settings) == rules.CUSTOMER_BLOCKED
    assert rules.customer_refusal(customer("A", kyc="pending"), settings) == rules.KYC_NOT_VERIFIED
    assert rules.customer_refusal(customer("A", kyc="rejected"), settings) == rules.KYC_NOT_VERIFIED
    assert rules.customer_refusal(customer("A"), settings) is None
    assert rules.customer_refusal(None, CustomerRule(enabled=False)) is None


def test_customer_rule_for_recipients() -> None:
    settings = CustomerRule()
    assert rules.recipient_refusal(None, settings) == rules.UNKNOWN_RECIPIENT
    assert rules.recipient_refusal(customer("B", blocked=True), settings) == rules.RECIPIENT_NOT_ALLOWED
    assert rules.recipient_refusal(customer("B", kyc="pending"), settings) == rules.RECIPIENT_NOT_ALLOWED
    assert rules.recipient_refusal(customer("B"), settings) is None


def test_single_limit_rule_allows_exactly_the_limit() -> None:
    alice = customer("A", single_limit=500)
    assert not rules.exceeds_single_limit(500, alice, SingleLimitRule())
    assert rules.exceeds_single_limit(501, alice, SingleLimitRule())
    assert not rules.exceeds_single_limit(501, alice, SingleLimitRule(enabled=False))


def test_daily_limit_rule_counts_the_rolling_window_only() -> None:
    settings = DailyLimitRule(window_ms=1_000)
    alice = customer("A", daily_limit=1_000)
    account = AccountState()
    remember_payment(account, "p1", 100, HORIZON)
    record_debit(account, 100, 600, settings.window_ms, HORIZON)
    remember_payment(account, "p2", 1_099, HORIZON)
    assert rules.exceeds_daily_limit(401, 1_099, account, alice, settings, HORIZON)
    assert not rules.exceeds_daily_limit(400, 1_099, account, alice, settings, HORIZON)
    remember_payment(account, "p3", 1_100, HORIZON)  # 100 is no longer > 1_100 - 1_000
    assert not rules.exceeds_daily_limit(1_000, 1_100, account, alice, settings, HORIZON)


def test_daily_limit_rule_ignores_later_entries_for_an_out_of_order_debit() -> None:
    settings = DailyLimitRule(window_ms=1_000)
    alice = customer("A", daily_limit=1_000)
    account = AccountState()
    remember_payment(account, "late", 5_000, HORIZON)
    record_debit(account, 5_000, 900, settings.window_ms, HORIZON)
    remember_payment(account, "early", 4_000, HORIZON)
    # t=5_000 is after ts=4_000: not in (3_000, 4_000]
    assert not rules.exceeds_daily_limit(1_000, 4_000, account, alice, settings, HORIZON)
    assert rules.exceeds_daily_limit(101, 5_500, account, alice, settings, HORIZON)


def test_funds_rule_uses_posted_minus_held() -> None:
    account = AccountState(posted=1_000, held=300)
    assert not rules.exceeds_funds(700, account, FundsRule())
    assert rules.exceeds_funds(701, account, FundsRule())
    assert not rules.exceeds_funds(701, account, FundsRule(enabled=False))


def _card_history(times: list[int], window_ms: int) -> AccountState:
    account = AccountState()
    for n, ts in enumerate(times):
        remember_payment(account, f"a{n}", ts, HORIZON)
        record_card_use(account, "FR", ts, window_ms, HORIZON)
    return account


def test_velocity_rule_fires_on_the_k_plus_first_authorization_in_the_window() -> None:
    settings = VelocityRule(max_authorizations=3, window_ms=1_000)
    account = _card_history([100, 200, 300], settings.window_ms)
    remember_payment(account, "x", 400, HORIZON)
    alert = rules.velocity_alert(authorize("x", 1, ts=400), account, settings, HORIZON)
    assert alert is not None
    assert (alert.rule, alert.score, alert.evidence) == ("velocity", 60, {"count": 4, "window_ms": 1_000, "limit": 3})
    account = _card_history([100, 200, 300], settings.window_ms)
    remember_payment(account, "y", 1_100, HORIZON)  # 100 has left (100, 1_100]
    assert rules.velocity_alert(authorize("y", 1, ts=1_100), account, settings, HORIZON) is None
    assert rules.velocity_alert(authorize("x", 1, ts=400), account, VelocityRule(enabled=False), HORIZON) is None


def test_velocity_score_is_capped_at_100() -> None:
    settings = VelocityRule(max_authorizations=1, window_ms=10_000)
    account = _card_history(list(range(10)), settings.window_ms)
    alert = rules.velocity_alert(authorize("x", 1, ts=10), account, settings, HORIZON)
    assert alert is not None and alert.evidence["count"] == 11 and alert.score == 100


def test_impossible_travel_rule_compares_speed_with_the_limit() -> None:
    settings = ImpossibleTravelRule(max_speed_kmh=1_000)
    distance = distance_km("FR", "JP")
    assert distance is not None
    account = AccountState(last_country="FR", last_use_ts=0)
    hour = 3_600_000
    alert = rules.travel_alert(authorize("x", 1, ts=hour, country="JP"), account, settings)
    assert alert is not None
    speed = distance  # one hour
    assert alert.evidence == {"from_country": "FR", "to_country": "JP", "distance_km": distance, "minutes": 60,
                              "speed_kmh": speed}
    assert alert.score == min(100, 50 + 50 * (speed - 1_000) // 1_000)
    slow = distance * hour // 1_000  # exactly max_speed: does not fire
    assert rules.travel_alert(authorize("x", 1, ts=slow, country="JP"), account, settings) is None


def test_impossible_travel_rule_needs_two_known_different_countries() -> None:
    settings = ImpossibleTravelRule(max_speed_kmh=1)
    assert rules.travel_alert(authorize("x", 1, ts=5, country="JP"), AccountState(), settings) is None
    assert rules.travel_alert(authorize("x", 1, ts=5, country="FR"), AccountState(last_country="FR"), settings) is None
    assert rules.travel_alert(authorize("x", 1, ts=5, country="ZZ"), AccountState(last_country="FR"), settings) is None
    same_ms = rules.travel_alert(authorize("x", 1, ts=0, country="DE"), AccountState(last_country="FR"), settings)
    assert same_ms is not None and same_ms.evidence["minutes"] == 0 and same_ms.score == 100  # dt is at least 1 ms
    assert rules.travel_alert(authorize("x", 1, ts=5, country="DE"), AccountState(last_country="FR"),
                              ImpossibleTravelRule(enabled=False)) is None


def test_impossible_travel_uses_the_absolute_time_difference() -> None:
    settings = ImpossibleTravelRule(max_speed_kmh=1_000)
    account = AccountState(last_country="FR", last_use_ts=10 * 3_600_000)
    backwards = rules.travel_alert(authorize("x", 1, ts=9 * 3_600_000, country="JP"), account, settings)
    forwards = rules.travel_alert(authorize("x", 1, ts=11 * 3_600_000, country="JP"), account, settings)
    assert backwards == forwards and backwards is not None
