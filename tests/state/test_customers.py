"""The customer table folds any bytes of `customer-status` without raising.

A record the table cannot use (a key that is not UTF-8, a value that is not a customer, a key
that disagrees with its row) is skipped: counted by reason and logged with where it was read,
never with a card number. A raise here used to stop the engine from starting (at load) or
freeze the table silently (in the follower thread).
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

from paystream.wire import CustomerStatus
from state.customers import CustomerTable
from tests.operators.builders import customer_row

PAN = "4111111111111111"


def table_with(*accounts: str) -> CustomerTable:
    table = CustomerTable()
    for account in accounts:
        table.apply(account.encode(), customer_row(account))
    return table


def test_a_tombstone_whose_key_is_not_utf8_is_skipped_not_raised() -> None:
    table = table_with("A")
    table.apply(b"\xff\xfeA", None, partition=1, offset=7)
    assert dict(table.skipped) == {"bad_key": 1}
    assert list(table) == ["A"]


def test_a_row_under_a_key_that_is_not_utf8_is_skipped() -> None:
    table = table_with("A")
    table.apply(b"\xffB", customer_row("B"))
    assert dict(table.skipped) == {"bad_key": 1}
    assert "B" not in table and list(table) == ["A"]


def test_a_value_that_is_not_json_is_skipped() -> None:
    table = table_with("A")
    table.apply(b"A", b"\xff\x00 not json")
    assert dict(table.skipped) == {"not_json": 1}
    assert table["A"].kyc == "verified"  # the previous row stays: a bad update is not a tombstone


def test_a_row_whose_key_disagrees_with_its_account_is_skipped() -> None:
    table = table_with("A")
    table.apply(b"A", customer_row("B", kyc="rejected"))
    assert dict(table.skipped) == {"key_mismatch": 1}
    assert "B" not in table and table["A"].kyc == "verified"


def test_a_valid_row_then_its_tombstone_adds_then_removes_the_customer() -> None:
    table = CustomerTable()
    table.apply(b"A", customer_row("A", kyc="pending"))
    assert table.get("A") == CustomerStatus(v=1, account="A", kyc="pending", blocked=False, single_limit=100_000,
                                            daily_limit=1_000_000, home_country="FR", currency="EUR")
    table.apply(b"A", None)
    assert "A" not in table and len(table) == 0
    table.apply(b"NEVER-SEEN", None)  # a tombstone of an unknown customer is a no-op, not a bad record
    assert not table.skipped


def test_a_tombstone_without_a_key_is_skipped() -> None:
    table = table_with("A")
    table.apply(None, None)
    assert dict(table.skipped) == {"no_key": 1}
    assert list(table) == ["A"]


def test_each_skipped_record_logs_one_warning_with_reason_and_position_and_no_card_number() -> None:
    table = CustomerTable()
    with capture_logs() as events:
        table.apply(PAN.encode() + b"\xff", None, partition=3, offset=42)
        table.apply(b"A", customer_row("A", kyc=PAN), partition=0, offset=5)  # msgspec quotes the bad value
        table.apply(PAN.encode(), customer_row("A"), partition=1, offset=9)  # key_mismatch quotes the key
        table.apply(b"A", b'{"pan":"' + PAN.encode() + b'"', partition=2, offset=1)
    warnings = [event for event in events if event["log_level"] == "warning"]
    assert [(w["reason"], w["partition"], w["offset"]) for w in warnings] == [
        ("bad_key", 3, 42), ("invalid_value", 0, 5), ("key_mismatch", 1, 9), ("not_json", 2, 1)]
    assert sum(table.skipped.values()) == 4
    assert PAN not in repr(events)
    assert "411111******1111" in repr(warnings[0])  # the key is shown, masked, so the record can be found


@given(st.one_of(st.none(), st.binary(max_size=64)), st.one_of(st.none(), st.binary(max_size=256)))
def test_any_bytes_are_folded_without_raising(key: bytes | None, value: bytes | None) -> None:
    table = CustomerTable()
    table.apply(key, value, partition=0, offset=0)
    assert sum(table.skipped.values()) + len(table) <= 1
