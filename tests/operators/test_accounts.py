"""The account state's windows and id memory against brute force: pruning never changes a result."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from operators.accounts import (
    CAPTURED,
    OPEN,
    VOIDED,
    AccountState,
    authorization,
    daily_spend,
    decode_account,
    encode_account,
    recent_authorizations,
    record_card_use,
    record_debit,
    remember_payment,
)
from operators.rules import is_duplicate
from paystream.settings import DuplicateRule, RuleSettings, VelocityRule
from tests.operators.builders import Bank, authorize, capture, customer, deposit

WINDOW = 100
HORIZON = 400

events = st.lists(
    st.tuples(st.integers(0, 3_000), st.integers(1, 50), st.integers(0, 30)),  # (ts, amount, payment id)
    min_size=1,
    max_size=120,
)


@settings(max_examples=300, deadline=None)
@given(events)
def test_windows_and_memory_match_the_formulas_over_everything_ever_recorded(
        stream: list[tuple[int, int, int]]) -> None:
    account = AccountState()
    everything: list[tuple[int, int]] = []
    remembered: dict[str, int] = {}
    newest = -1
    for ts, amount, pid in stream:
        payment_id = f"p{pid}"
        expected_duplicate = payment_id in remembered and remembered[payment_id] >= newest - HORIZON
        assert is_duplicate(account, payment_id, DuplicateRule(horizon_ms=HORIZON)) == expected_duplicate
        if expected_duplicate:
            continue
        remember_payment(account, payment_id, ts, HORIZON)
        remembered[payment_id] = ts
        newest = max(newest, ts)
        floor = max(ts, newest - HORIZON) - WINDOW
        assert daily_spend(account, ts, WINDOW, HORIZON) == sum(a for t, a in everything if floor < t <= ts)
        assert recent_authorizations(account, ts, WINDOW, HORIZON) == sum(1 for t, _ in everything if floor < t <= ts)
        record_debit(account, ts, amount, WINDOW, HORIZON)
        record_card_use(account, "FR", ts, WINDOW, HORIZON)
        everything.append((ts, amount))
        assert account.debit_times == sorted(account.debit_times)
        assert account.auth_times == sorted(account.auth_times)
        # bounded: nothing older than the horizon, the window and the batching slack is kept
        for times in (account.debit_times, account.auth_times):
            assert all(t > newest - HORIZON - WINDOW - WINDOW // 8 - 1 for t in times)
        assert all(t >= newest - HORIZON - HORIZON // 8 - 1 for t in account.payment_ids.values())
        assert decode_account(encode_account(account)) == account


def test_closed_authorizations_are_forgotten_then_evicted_once_the_horizon_passes_their_close() -> None:
    """RULES.md clarifications: closed before `newest_ts - horizon` → forgotten (at once, by its
    ts), and dropped at the next sweep; an open authorization is never forgotten."""
    account = AccountState()
    remember_payment(account, "a1", 0, HORIZON)
    account.authorizations.update({"a1": [10, CAPTURED, 10, 0, 100], "a2": [10, OPEN, 0, 0, 0],
                                   "a3": [10, VOIDED, 0, 0, 450]})
    remember_payment(account, "p1", 500, HORIZON)  # 100 >= 500 - 400: a1 still counts
    assert authorization(account, "a1", HORIZON) is not None
    remember_payment(account, "p2", 501, HORIZON)
    assert authorization(account, "a1", HORIZON) is None  # forgotten, not dropped yet
    assert "a1" in account.authorizations
    remember_payment(account, "p3", 10_000, HORIZON)  # a sweep: a1 and a3 go, the open a2 stays
    assert set(account.authorizations) == {"a2"} and authorization(account, "a2", HORIZON) is not None
    assert set(account.payment_ids) == {"p3"}


def test_a_busy_account_keeps_only_what_the_horizon_covers() -> None:
    """Hazard (issue 10, #6): authorizations were never evicted. 20,000 authorize+capture pairs
    over 25 horizons: what is kept is what the last horizon (and the sweep's slack) holds."""
    bank = Bank(RuleSettings(duplicate=DuplicateRule(horizon_ms=HORIZON * 100),
                             velocity=VelocityRule(max_authorizations=10**9)),
                A=customer("A", single_limit=10**9, daily_limit=10**12))
    bank.run(deposit("d0", 10**9, ts=0))
    for n in range(10_000):
        ts = n * 100
        assert bank.verdict(authorize(f"a{n}", 1, ts=ts)) == ("approved", [])
        assert bank.verdict(capture(f"c{n}", f"a{n}", 1, ts=ts + 50)) == ("approved", [])
    account = bank.account("A")
    per_horizon = HORIZON * 100 // 100  # authorizations per horizon
    assert len(account.authorizations) <= per_horizon * 9 // 8 + 2
    assert len(account.payment_ids) <= 2 * (per_horizon * 9 // 8 + 2)
    assert len(account.debit_times) <= (HORIZON * 100 + 86_400_000) // 100 + 1
