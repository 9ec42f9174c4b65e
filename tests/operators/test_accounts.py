"""The account state's windows and id memory against brute force: pruning never changes a result."""

from __future__ import annotations

from hypothesis import given, settings, strategies as st

from operators.accounts import (
    AccountState,
    daily_spend,
    decode_account,
    encode_account,
    recent_authorizations,
    record_card_use,
    record_debit,
    remember_payment,
)
from operators.rules import is_duplicate
from paystream.settings import DuplicateRule

WINDOW = 100
HORIZON = 400

events = st.lists(
    st.tuples(st.integers(0, 3_000), st.integers(1, 50), st.integers(0, 30)),  # (ts, amount, payment id)
    min_size=1,
    max_size=120,
)


@settings(max_examples=300, deadline=None)
@given(events)
def test_windows_and_memory_match_the_formulas_over_everything_ever_recorded(stream: list[tuple[int, int, int]]) -> None:
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
