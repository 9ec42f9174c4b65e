"""The model's own reading of the wire contract: murmur2, malformed kinds, misrouting."""

from __future__ import annotations

import pytest

from paystream.wire import Malformed, decode_command
from tests.verify.snapshots import command
from tools.traffic import Traffic
from verify.validation import (
    Command,
    InputRecord,
    Invalid,
    classify_payment,
    customer_table,
    murmur2,
    payment_partition,
)

GOOD = command("deposit", "p1", "A1", 500, 1)


@pytest.mark.parametrize(("text", "java_int"), [
    # Kafka's UtilsTest.testMurmur2
    ("21", -973932308), ("foobar", -790332482), ("a-little-bit-long-string", -985981536),
    ("a-little-bit-longer-string", -1486304829), ("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
    ("abc", 479470107),
])
def test_murmur2_matches_kafkas_java_implementation(text: str, java_int: int) -> None:
    assert murmur2(text.encode()) == java_int & 0xFFFFFFFF


def record(value: bytes | None, key: bytes | None = b"A1", partition: int = 0) -> InputRecord:
    return InputRecord("payments", partition, 7, key, value)


@pytest.mark.parametrize(("value", "key", "reason"), [
    (None, b"A1", "empty_value"),
    (b"\xff{", b"A1", "not_json"),
    (b"[1, 2]", b"A1", "not_an_object"),
    (b'{"v":1,"payment_id":"p1","account":"A1","amount":5,"currency":"EUR","ts":1}', b"A1", "missing_field"),
    (GOOD.replace(b'"deposit"', b'"gift"'), b"A1", "unknown_type"),
    (GOOD.replace(b'"v":1', b'"v":2'), b"A1", "bad_version"),
    (GOOD.replace(b'"amount":500', b'"amount":0'), b"A1", "non_positive_amount"),
    (GOOD.replace(b'"amount":500', b'"amount":"500"'), b"A1", "wrong_type"),
    (GOOD.replace(b'"EUR"', b'"eur"'), b"A1", "bad_currency"),
    (GOOD.replace(b'"ts":1', b'"ts":-1'), b"A1", "invalid_value"),
    (GOOD.replace(b'"p1"', b'""'), b"A1", "invalid_value"),
    (command("authorize", "p1", "A1", 5, 1, country="Germany"), b"A1", "bad_country"),
    (command("capture", "p1", "A1", 5, 1), b"A1", "missing_field"),
    (GOOD, b"A2", "key_mismatch"),
    (GOOD, None, "key_mismatch"),
])
def test_each_malformed_kind_is_named(value: bytes | None, key: bytes | None, reason: str) -> None:
    verdict = classify_payment(record(value, key), None)
    assert isinstance(verdict, Invalid) and verdict.reason == reason


def test_a_record_with_two_different_problems_has_no_single_reason_to_compare() -> None:
    verdict = classify_payment(record(GOOD.replace(b'"EUR"', b'"eur"').replace(b'"amount":500', b'"amount":0')), None)
    assert isinstance(verdict, Invalid)
    assert verdict.reason is None and set(verdict.problems) == {"bad_currency", "non_positive_amount"}


def test_a_record_outside_its_keys_partition_is_misrouted() -> None:
    home = payment_partition(b"A1", 4)
    assert isinstance(classify_payment(record(GOOD, partition=home), 4), Command)
    verdict = classify_payment(record(GOOD, partition=(home + 1) % 4), 4)
    assert isinstance(verdict, Invalid) and verdict.reason == "misrouted"


def test_the_latest_customer_row_wins_and_a_tombstone_removes_it() -> None:
    from tests.verify.snapshots import customer

    table = customer_table([(b"A", customer("A")), (b"B", customer("B")), (b"A", customer("A", blocked=True)),
                            (b"B", None), (b"C", b"not json")])
    assert set(table) == {"A"} and table["A"].blocked


def test_validation_agrees_with_the_engines_decoder_on_generated_traffic() -> None:
    """An independent cross-check: the two implementations of the contract must agree."""
    disagreements = []
    for n, (kind, key, value) in enumerate(Traffic(accounts=200, payments=5000, seed=11, bad_ratio=0.2)):
        if kind != "payments":
            continue
        mine = classify_payment(InputRecord("payments", 0, n, key, value), None)
        theirs = decode_command(key, value)
        if isinstance(mine, Invalid) != isinstance(theirs, Malformed) or (
                isinstance(mine, Invalid) and mine.reason is not None and mine.reason != theirs.reason):  # type: ignore[union-attr]
            disagreements.append((value, mine, theirs))
    assert disagreements == []
