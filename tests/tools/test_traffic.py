"""The traffic generator: deterministic, realistic life cycles, every scenario and every reason code."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

import msgspec
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from paystream.wire import (
    REASON_CODES,
    Authorize,
    Capture,
    CustomerStatus,
    Malformed,
    Refund,
    Transfer,
    Void,
    decode_command,
    decode_customer,
)
from tools.traffic import MALFORMED_REASONS, Record, Traffic, simple_payments

ACCOUNTS, PAYMENTS, SEED, BAD_RATIO = 1_500, 20_000, 42, 0.05


@pytest.fixture(scope="module")
def traffic() -> tuple[Traffic, list[Record]]:
    generator = Traffic(ACCOUNTS, PAYMENTS, SEED, BAD_RATIO)
    return generator, list(generator)


@pytest.fixture(scope="module")
def decoded(traffic: tuple[Traffic, list[Record]]) -> list[tuple[bytes | None, bytes | None, Any]]:
    """Every payments record with what the edge decoder makes of it."""
    return [(key, value, decode_command(key, value)) for kind, key, value in traffic[1] if kind == "payments"]


@pytest.fixture(scope="module")
def first_sends(decoded: list[tuple[bytes | None, bytes | None, Any]]) -> list[Any]:
    """The valid commands in order, each `payment_id` once (re-sends dropped)."""
    seen: set[str] = set()
    commands = []
    for _, _, command in decoded:
        if not isinstance(command, Malformed) and command.payment_id not in seen:
            seen.add(command.payment_id)
            commands.append(command)
    return commands


def test_the_same_seed_gives_the_same_bytes_and_another_seed_other_bytes(traffic: tuple[Traffic, list[Record]]) -> None:
    again = list(Traffic(ACCOUNTS, PAYMENTS, SEED, BAD_RATIO))
    assert again == traffic[1]
    other = list(Traffic(ACCOUNTS, PAYMENTS, SEED + 1, BAD_RATIO))
    assert len([1 for a, b in zip(other, traffic[1], strict=False) if a != b]) > len(other) // 2


def test_exactly_the_requested_payments_follow_every_customer_record(traffic: tuple[Traffic, list[Record]]) -> None:
    generator, records = traffic
    kinds = [kind for kind, _, _ in records]
    first_payment = kinds.index("payments")
    assert set(kinds[:first_payment]) == {"customers"} and set(kinds[first_payment:]) == {"payments"}
    assert kinds.count("payments") == PAYMENTS
    assert generator.summary.records == Counter(kinds)


def test_customers_are_valid_rows_with_varied_status_and_some_tombstones_after_a_row(
        traffic: tuple[Traffic, list[Record]]) -> None:
    rows: dict[bytes, CustomerStatus] = {}
    statuses, tombstones = [], 0
    for kind, key, value in traffic[1]:
        if kind != "customers":
            continue
        assert key is not None
        row = decode_customer(key, value)
        assert not isinstance(row, Malformed), row
        if row is None:
            assert key in rows, "a tombstone without an earlier row"
            tombstones += 1
        else:
            rows[key] = row
            statuses.append(row)
    assert tombstones >= 1
    assert {s.kyc for s in statuses} == {"verified", "pending", "rejected"}
    assert any(s.blocked for s in statuses) and Counter(s.kyc for s in statuses)["verified"] > 0.8 * len(statuses)
    currencies = Counter(s.currency for s in statuses)
    assert set(currencies) == {"EUR", "USD", "GBP"} and currencies["EUR"] > len(statuses) / 2
    assert len({s.single_limit for s in statuses}) > 3 and len({s.home_country for s in statuses}) > 5
    assert all(s.daily_limit >= s.single_limit for s in statuses)
    paying = {key for key, _, _ in _payments(traffic[1]) if key is not None}
    assert paying - set(rows), "some accounts that pay never had a customer row"


def _payments(records: list[Record]) -> list[Record]:
    return [record for record in records if record[0] == "payments"]


def test_every_reason_code_appears_and_matches_the_summary(
        traffic: tuple[Traffic, list[Record]], decoded: list[Any]) -> None:
    reasons = Counter(command.reason for _, _, command in decoded if isinstance(command, Malformed))
    assert set(reasons) == set(REASON_CODES) - {"misrouted", "ts_out_of_range"} == set(MALFORMED_REASONS)
    assert reasons == traffic[0].summary.malformed
    assert 0.04 * PAYMENTS < sum(reasons.values()) < 0.06 * PAYMENTS


def test_valid_commands_match_the_summary_per_type(
        traffic: tuple[Traffic, list[Record]], decoded: list[Any], first_sends: list[Any]) -> None:
    summary = traffic[0].summary
    by_type = Counter(type(command).__name__.lower() for command in first_sends)
    assert by_type == summary.commands
    valid = sum(1 for _, _, command in decoded if not isinstance(command, Malformed))
    assert valid - len(first_sends) == summary.duplicates > 0
    assert min(by_type.values()) > 50, by_type


def test_duplicates_are_byte_identical_re_sends_a_little_later(decoded: list[Any]) -> None:
    first_seen: dict[str, tuple[int, bytes | None, bytes | None]] = {}
    resends = 0
    for position, (key, value, command) in enumerate(decoded):
        if isinstance(command, Malformed):
            continue
        if command.payment_id in first_seen:
            first, first_key, first_value = first_seen[command.payment_id]
            assert (key, value) == (first_key, first_value), "a re-used payment_id must be an exact re-send"
            assert 0 < position - first < 2_500
            resends += 1
        else:
            first_seen[command.payment_id] = (position, key, value)
    assert resends > 0


def test_life_cycles_refer_to_earlier_authorizations_of_the_same_account(
        traffic: tuple[Traffic, list[Record]], first_sends: list[Any]) -> None:
    all_ids = {command.payment_id for command in first_sends}
    authorized: dict[str, str] = {}  # auth_id -> account
    captured: set[str] = set()
    unknown = Counter[str]()
    funded: set[str] = set()
    for command in first_sends:
        if command.account not in funded:
            assert type(command).__name__ == "Deposit", "an account is funded before anything else"
            funded.add(command.account)
        if isinstance(command, Authorize):
            authorized[command.payment_id] = command.account
        elif isinstance(command, (Capture, Void, Refund)):
            if command.auth_id in authorized:
                assert authorized[command.auth_id] == command.account
            else:
                assert command.auth_id not in all_ids, "an auth_id is an earlier authorization or no payment at all"
                unknown[type(command).__name__] += 1
            if isinstance(command, Capture):
                captured.add(command.auth_id)
            if isinstance(command, Refund):
                assert command.auth_id in captured, "refunds come after a capture"
    assert unknown == Counter({"Capture": traffic[0].summary.scenarios["capture_unknown_authorization"]})
    assert unknown["Capture"] > 0


def test_the_rule_scenarios_are_present(first_sends: list[Any], traffic: tuple[Traffic, list[Record]]) -> None:
    rows = {}
    for kind, key, value in traffic[1]:
        if kind == "customers" and key is not None:
            rows[key.decode()] = decode_customer(key, value)
    authorizations: dict[str, list[Authorize]] = defaultdict(list)
    transfers = [c for c in first_sends if isinstance(c, Transfer)]
    for command in first_sends:
        if isinstance(command, Authorize):
            authorizations[command.account].append(command)

    def burst(auths: list[Authorize]) -> bool:
        times = sorted(a.ts for a in auths)
        return any(times[i + 5] - times[i] < 600_000 for i in range(len(times) - 5))

    assert any(burst(auths) for auths in authorizations.values()), "velocity: >5 authorizations within 10 minutes"
    assert any(a.country != b.country and abs(a.ts - b.ts) < 600_000
               for auths in authorizations.values() for a, b in zip(auths, auths[1:], strict=False)), \
        "impossible travel"
    assert any(isinstance(rows.get(a.account), CustomerStatus) and a.amount > rows[a.account].single_limit
               for auths in authorizations.values() for a in auths), "single limit breach"
    assert any(t.to_account == t.account for t in transfers)
    assert any(rows.get(t.to_account) is None for t in transfers), "transfers to unknown customers"
    assert (any(isinstance(rows.get(t.to_account), CustomerStatus) and rows[t.to_account].blocked for t in transfers)
            or any(isinstance(rows.get(t.to_account), CustomerStatus) and rows[t.to_account].kyc != "verified"
                   for t in transfers))
    same = sum(1 for t in transfers
               if isinstance(rows.get(t.to_account), CustomerStatus) and rows[t.to_account].currency == t.currency)
    assert same > 0.8 * len(transfers), "transfers are mostly between accounts of one currency"
    with_pan = [a for auths in authorizations.values() for a in auths if a.pan is not None]
    assert with_pan and all(a.pan and "*" in a.pan for a in with_pan)
    assert any(a.merchant for auths in authorizations.values() for a in auths)
    summary = traffic[0].summary.scenarios
    for name in ("daily_limit_breach", "velocity_burst", "impossible_travel", "capture_exceeds_hold",
                 "void_after_capture", "refund_exceeds_captured", "transfer_currency_mismatch",
                 "authorize_currency_mismatch", "late_event_time"):
        assert summary[name] > 0, name


def test_event_time_advances_about_fifty_ms_a_record_with_a_few_late_ones(first_sends: list[Any]) -> None:
    times = [command.ts for command in first_sends]
    late = sum(1 for previous, ts in zip(times, times[1:], strict=False) if ts < previous)
    assert 0 < late < 0.05 * len(times)
    mean_gap = (max(times) - min(times)) / PAYMENTS
    assert 30 < mean_gap < 80, mean_gap


def test_cards_in_the_raw_traffic_are_full_16_digit_numbers_with_a_valid_check_digit(
        traffic: tuple[Traffic, list[Record]]) -> None:
    pans = {msgspec.json.decode(value)["pan"] for kind, _, value in _payments(traffic[1])
            if value is not None and b'"pan":"' in value}
    assert pans
    for pan in pans:
        digits = [int(d) for d in reversed(pan)]
        total = sum(digits[0::2]) + sum(sum(divmod(2 * d, 10)) for d in digits[1::2])
        assert len(pan) == 16 and total % 10 == 0, pan


def test_keys_are_the_account_except_key_mismatch_records(decoded: list[Any]) -> None:
    for key, _value, command in decoded:
        if not isinstance(command, Malformed):
            assert key == command.account.encode() and key is not None and len(key) == 11 and key.startswith(b"ACC")


def test_simple_payments_are_deterministic_keyed_by_account_with_small_amounts() -> None:
    records = list(simple_payments(100, 2_000, seed=5))
    assert records == list(simple_payments(100, 2_000, seed=5)) != list(simple_payments(100, 2_000, seed=6))
    ids = set()
    for kind, key, value in records:
        payment = msgspec.json.decode(value)
        assert kind == "payments" and key == payment["account"].encode() and payment["type"] == "payment"
        assert 1 <= payment["amount"] <= 50_000 and payment["currency"] == "EUR" and payment["v"] == 1
        ids.add(payment["payment_id"])
    assert len(ids) == 2_000


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError):
        Traffic(1, 10)
    with pytest.raises(ValueError):
        Traffic(10, 10, bad_ratio=1.5)


def test_the_jsonl_file_holds_the_same_records_as_text(tmp_path: Any) -> None:
    from tools.cli.generate import write_traffic

    path = tmp_path / "traffic.jsonl"
    summary = write_traffic(str(path), accounts=50, payments=800, seed=4, bad_ratio=0.05, progress=False)
    lines = [msgspec.json.decode(line) for line in path.read_bytes().splitlines()]
    expected = list(Traffic(50, 800, 4, 0.05))
    assert len(lines) == len(expected) == sum(summary.records.values())
    for line, (kind, key, value) in zip(lines, expected, strict=True):
        assert line["topic"] == kind
        assert line["key"] == (None if key is None else key.decode())
        assert line["value"] == (None if value is None else value.decode("utf-8", "replace"))


@given(st.integers(2, 8), st.integers(0, 400), st.integers(0, 2**32), st.sampled_from((0.0, 0.05, 0.5)))
@settings(max_examples=300, deadline=None)
@example(5, 200, 56, 0.1)  # once picked a transfer recipient from an empty currency pool
def test_tiny_and_tight_configurations_still_give_exactly_the_requested_records(
        accounts: int, payments: int, seed: int, bad_ratio: float) -> None:
    generator = Traffic(accounts, payments, seed, bad_ratio)
    records = list(generator)
    summary = generator.summary
    assert sum(1 for kind, _, _ in records if kind == "payments") == payments
    assert sum(summary.commands.values()) + summary.duplicates + sum(summary.malformed.values()) == payments
