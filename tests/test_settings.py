"""Settings that would break a guarantee are refused at load, with a message naming them."""

from __future__ import annotations

import pytest

from paystream.settings import SettingsError, load


def test_a_commit_deadline_at_or_past_the_transaction_timeout_is_refused() -> None:
    with pytest.raises(SettingsError, match="engine.commit_timeout_ms"):
        load(environ={"PAYSTREAM_ENGINE__COMMIT_TIMEOUT_MS": "30000"})
    assert load(environ={}).engine.commit_timeout_ms < load(environ={}).engine.transaction_timeout_ms


def test_event_time_bounds_must_stay_inside_the_duplicate_horizon() -> None:
    with pytest.raises(SettingsError, match="rules.event_time"):
        load(environ={}, rules={"duplicate": {"horizon_ms": 60_000}})
    narrow = load(environ={}, rules={"duplicate": {"horizon_ms": 60_000},
                                     "event_time": {"max_skew_ms": 1_000, "max_lateness_ms": 10_000}})
    assert narrow.rules.event_time.max_lateness_ms == 10_000
