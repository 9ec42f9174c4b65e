"""The edge decoder: valid commands round-trip, every malformed kind gets its reason code,
arbitrary bytes never raise, and card numbers never leave it unmasked."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import msgspec
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from paystream.wire import (
    COMMAND_TYPES,
    REASON_CODES,
    Authorize,
    CustomerStatus,
    Malformed,
    decode_command,
    decode_customer,
    mask_pan,
    redact_pans,
)

identifiers = st.text(min_size=1, max_size=128)
amounts = st.integers(min_value=1, max_value=10**15)
currencies = st.from_regex(r"\A[A-Z]{3}\Z")
countries = st.from_regex(r"\A[A-Z]{2}\Z")
pans = st.from_regex(r"\A[1-9][0-9]{12,18}\Z")  # card numbers never start with 0

# the fields each type needs beyond the common ones
_EXTRA_REQUIRED = {"capture": ("auth_id",), "void": ("auth_id",), "refund": ("auth_id",),
                   "transfer": ("to_account",), "authorize": ("country",), "deposit": ()}
_COMMON_REQUIRED = ("v", "type", "payment_id", "account", "amount", "currency", "ts")


@st.composite
def commands(draw: st.DrawFn, types: tuple[str, ...] = COMMAND_TYPES) -> dict[str, Any]:
    """A valid command of any type, as the JSON object a producer would send."""
    kind = draw(st.sampled_from(types))
    command: dict[str, Any] = {
        "v": 1, "type": kind, "payment_id": draw(identifiers), "account": draw(identifiers),
        "amount": draw(amounts), "currency": draw(currencies), "ts": draw(st.integers(0, 2**62)),
    }
    if kind in ("capture", "void", "refund"):
        command["auth_id"] = draw(identifiers)
    if kind == "transfer":
        command["to_account"] = draw(identifiers)
    if kind == "authorize":
        command["country"] = draw(countries)
        if draw(st.booleans()):
            command["merchant"] = draw(st.text(max_size=40))
        if draw(st.booleans()):
            command["pan"] = draw(pans)
    return command


def _record(command: dict[str, Any]) -> tuple[bytes, bytes]:
    return command["account"].encode(), msgspec.json.encode(command)


@given(commands())
def test_every_valid_command_round_trips(command: dict[str, Any]) -> None:
    decoded = decode_command(*_record(command))
    assert not isinstance(decoded, Malformed), decoded
    as_sent = {name: value for name, value in command.items() if name != "pan"}
    assert {name: value for name, value in msgspec.to_builtins(decoded).items() if name in as_sent} == as_sent
    if "pan" in command:
        assert isinstance(decoded, Authorize) and decoded.pan == mask_pan(command["pan"])


# -- one mutation per reason code: each breaks exactly one thing of a valid command ----------

def _not_json(draw: st.DrawFn, command: dict[str, Any]) -> tuple[bytes | None, bytes | None]:
    raw = msgspec.json.encode(command)
    return command["account"].encode(), draw(st.sampled_from(
        (raw[:-1], raw + b"}", b"{" + raw, raw.replace(b":", b"=", 1), b"", b"\xff" + raw)))


def _not_an_object(draw: st.DrawFn, command: dict[str, Any]) -> tuple[bytes | None, bytes | None]:
    value = draw(st.sampled_from(([command], command["payment_id"], command["amount"], None, True, [])))
    return command["account"].encode(), msgspec.json.encode(value)


def _empty_value(draw: st.DrawFn, command: dict[str, Any]) -> tuple[bytes | None, bytes | None]:
    return command["account"].encode(), None


def _missing_field(draw: st.DrawFn, command: dict[str, Any]) -> tuple[bytes | None, bytes | None]:
    name = draw(st.sampled_from(_COMMON_REQUIRED + _EXTRA_REQUIRED[command["type"]]))
    key = command["account"].encode()
    del command[name]
    return key, msgspec.json.encode(command)


def _wrong_type(draw: st.DrawFn, command: dict[str, Any]) -> tuple[bytes | None, bytes | None]:
    # `v` and `type` have their own codes (bad_version, unknown_type); any other field will do
    name = draw(st.sampled_from([n for n in command if n not in ("v", "type", "account")]))
    if isinstance(command[name], int):
        command[name] = draw(st.sampled_from(
            (str(command[name]), float(command[name]) + 0.5, None, True, [command[name]])))
    else:
        command[name] = draw(st.sampled_from((123, 1.5, True, [command[name]], {"x": command[name]})))
    return command["account"].encode(), msgspec.json.encode(command)


def _bad_version(draw: st.DrawFn, command: dict[str, Any]) -> tuple[bytes | None, bytes | None]:
    command["v"] = draw(st.one_of(st.integers().filter(lambda v: v != 1), st.sampled_from(("1", None, 1.0, [1]))))
    return command["account"].encode(), msgspec.json.encode(command)


def _unknown_type(draw: st.DrawFn, command: dict[str, Any]) -> tuple[bytes | None, bytes | None]:
    command["type"] = draw(st.text().filter(lambda t: t not in COMMAND_TYPES))
    return command["account"].encode(), msgspec.json.encode(command)


def _non_positive_amount(draw: st.DrawFn, command: dict[str, Any]) -> tuple[bytes | None, bytes | None]:
    command["amount"] = draw(st.one_of(st.integers(min_value=-(2**63), max_value=0),
                                       st.integers(min_value=10**15 + 1, max_value=2**63 - 1)))
    return command["account"].encode(), msgspec.json.encode(command)


def _bad_currency(draw: st.DrawFn, command: dict[str, Any]) -> tuple[bytes | None, bytes | None]:
    command["currency"] = draw(st.text().filter(lambda c: not re.fullmatch(r"[A-Z]{3}", c)))
    return command["account"].encode(), msgspec.json.encode(command)


def _bad_country(draw: st.DrawFn, command: dict[str, Any]) -> tuple[bytes | None, bytes | None]:
    command.update(type="authorize", country=draw(st.text().filter(lambda c: not re.fullmatch(r"[A-Z]{2}", c))))
    return command["account"].encode(), msgspec.json.encode(command)


def _invalid_value(draw: st.DrawFn, command: dict[str, Any]) -> tuple[bytes | None, bytes | None]:
    name = draw(st.sampled_from([n for n in ("payment_id", "account", "auth_id", "to_account", "ts") if n in command]))
    if name == "ts":
        command["ts"] = draw(st.integers(min_value=-(2**63), max_value=-1))
    else:
        command[name] = draw(st.sampled_from(("", "x" * 129)))
    return command["account"].encode(), msgspec.json.encode(command)


def _key_mismatch(draw: st.DrawFn, command: dict[str, Any]) -> tuple[bytes | None, bytes | None]:
    key = draw(st.one_of(st.none(), st.binary().filter(lambda k: k != command["account"].encode())))
    return key, msgspec.json.encode(command)


MUTATIONS: dict[str, Callable[[st.DrawFn, dict[str, Any]], tuple[bytes | None, bytes | None]]] = {
    "not_json": _not_json, "not_an_object": _not_an_object, "empty_value": _empty_value,
    "missing_field": _missing_field, "wrong_type": _wrong_type, "bad_version": _bad_version,
    "unknown_type": _unknown_type, "non_positive_amount": _non_positive_amount,
    "bad_currency": _bad_currency, "bad_country": _bad_country, "invalid_value": _invalid_value,
    "key_mismatch": _key_mismatch,
}


def test_every_producer_reason_code_has_a_mutation() -> None:
    # `misrouted` and `ts_out_of_range` are decided from the partition and the Kafka timestamp,
    # not from the record's bytes
    assert set(MUTATIONS) == set(REASON_CODES) - {"misrouted", "ts_out_of_range"}


@pytest.mark.parametrize("reason", sorted(MUTATIONS))
@settings(max_examples=60)
@given(data=st.data())
def test_each_malformation_yields_its_reason_code(reason: str, data: st.DataObject) -> None:
    command = data.draw(commands())
    key, value = MUTATIONS[reason](data.draw, command)
    decoded = decode_command(key, value)
    assert isinstance(decoded, Malformed), (key, value, decoded)
    assert decoded.reason == reason, (value, decoded.error)


@given(st.one_of(st.none(), st.binary()), st.one_of(st.none(), st.binary()))
def test_arbitrary_bytes_never_raise(key: bytes | None, value: bytes | None) -> None:
    decoded = decode_command(key, value)
    assert not isinstance(decoded, Malformed) or decoded.reason in REASON_CODES


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)


@given(st.dictionaries(st.sampled_from(_COMMON_REQUIRED + ("auth_id", "to_account", "country", "pan", "merchant")),
                       json_values | st.sampled_from(COMMAND_TYPES) | amounts), st.binary(max_size=16))
def test_objects_with_contract_field_names_never_raise(obj: dict[str, Any], key: bytes) -> None:
    decoded = decode_command(key, msgspec.json.encode(obj))
    assert isinstance(decoded, Malformed) and decoded.reason in REASON_CODES or decoded.account.encode() == key


# -- card numbers ----------------------------------------------------------------------------

def _shows_at_most_six_and_four(original: str, masked: str) -> bool:
    """Only positions among the first six and the last four may show their original digit."""
    if len(masked) != len(original):
        return False
    shown = [i for i, ch in enumerate(masked) if ch != "*"]
    return all(masked[i] == original[i] and (i < 6 or i >= len(original) - 4) for i in shown)


@given(commands(types=("authorize",)), pans)
def test_an_authorization_pan_is_masked_at_the_edge(command: dict[str, Any], pan: str) -> None:
    command["pan"] = pan
    decoded = decode_command(*_record(command))
    assert isinstance(decoded, Authorize) and decoded.pan is not None
    assume(pan not in command["account"] + command["payment_id"] + command.get("merchant", "") + str(command["ts"])
           + str(command["amount"]))
    assert _shows_at_most_six_and_four(pan, decoded.pan)
    assert decoded.pan[-4:] == pan[-4:]  # enough to recognise the card, no more
    # nothing downstream can leak it: the re-encoded command holds neither the number nor its middle
    assert pan.encode() not in msgspec.json.encode(decoded) and pan[6:13] not in decoded.pan


def test_mask_pan_examples() -> None:
    assert mask_pan("4111111111111111") == "411111******1111"
    assert mask_pan("378282246310005") == "378282*****0005"
    assert mask_pan("4222222222222") == "*********2222"
    assert mask_pan("123") == "***"


@given(commands(types=("authorize",)), pans, st.booleans())
def test_redact_pans_masks_the_pan_in_raw_dlq_bytes_and_nothing_else(
        command: dict[str, Any], pan: str, as_number: bool) -> None:
    assume(not re.search(r"\d{13}", command["payment_id"] + command["account"] + command.get("merchant", "")))
    command["pan"] = int(pan) if as_number else pan
    command["amount"] = "not an int"  # a malformed record, the kind that reaches the DLQ raw
    raw = msgspec.json.encode(command)
    redacted = redact_pans(raw)
    shown = str(command["pan"])
    pan_field = redacted[redacted.index(b'"pan":'):]  # other fields (a 16-digit ts, say) may contain the digits
    assert shown.encode() not in pan_field
    masked_field = b'"pan":' + (mask_pan(shown).encode() if as_number else msgspec.json.encode(mask_pan(shown)))
    assert redacted == raw.replace(b'"pan":' + msgspec.json.encode(command["pan"]), masked_field)


@given(st.binary())
def test_redact_pans_leaves_bytes_without_card_numbers_alone(raw: bytes) -> None:
    assume(b'"pan"' not in raw and not re.search(rb'"\d{13,19}"', raw))
    assert redact_pans(raw) == raw


def test_redact_pans_keeps_unquoted_timestamps_and_masks_quoted_card_numbers_in_any_field() -> None:
    raw = b'{"ts":1767225600000,"amount":12,"card":"5555555555554444","pan":4111111111111111}'
    assert redact_pans(raw) == b'{"ts":1767225600000,"amount":12,"card":"555555******4444","pan":411111******1111}'


# -- customer-status -------------------------------------------------------------------------

@st.composite
def customers(draw: st.DrawFn) -> dict[str, Any]:
    single = draw(st.integers(0, 10**15))
    return {"v": 1, "account": draw(identifiers), "kyc": draw(st.sampled_from(("verified", "pending", "rejected"))),
            "blocked": draw(st.booleans()), "single_limit": single, "daily_limit": draw(st.integers(0, 10**15)),
            "home_country": draw(countries), "currency": draw(currencies)}


@given(customers())
def test_a_customer_row_round_trips(row: dict[str, Any]) -> None:
    decoded = decode_customer(row["account"].encode(), msgspec.json.encode(row))
    assert isinstance(decoded, CustomerStatus)
    assert msgspec.to_builtins(decoded) == row


def test_a_customer_tombstone_decodes_to_none() -> None:
    assert decode_customer(b"ACC00000001", None) is None


@pytest.mark.parametrize(("field", "value", "reason"), [
    ("kyc", "unknown", "invalid_value"),
    ("blocked", "yes", "wrong_type"),
    ("single_limit", -1, "invalid_value"),
    ("daily_limit", 1.5, "wrong_type"),
    ("currency", "eur", "bad_currency"),
    ("currency", "EUR\n", "bad_currency"),
    ("v", 2, "bad_version"),
])
def test_a_bad_customer_row_is_malformed_with_its_reason(field: str, value: Any, reason: str) -> None:
    row = {"v": 1, "account": "ACC00000001", "kyc": "verified", "blocked": False, "single_limit": 100,
           "daily_limit": 500, "home_country": "DE", "currency": "EUR", field: value}
    decoded = decode_customer(b"ACC00000001", msgspec.json.encode(row))
    assert isinstance(decoded, Malformed) and decoded.reason == reason


def test_a_customer_row_under_another_key_or_broken_json_is_malformed() -> None:
    row = msgspec.json.encode({"v": 1, "account": "ACC00000001", "kyc": "verified", "blocked": False,
                               "single_limit": 100, "daily_limit": 500, "home_country": "DE", "currency": "EUR"})
    mismatch = decode_customer(b"ACC00000002", row)
    assert isinstance(mismatch, Malformed) and mismatch.reason == "key_mismatch"
    broken = decode_customer(b"ACC00000001", row[:-2])
    assert isinstance(broken, Malformed) and broken.reason == "not_json"
    missing = decode_customer(b"ACC00000001", b'{"v":1,"account":"ACC00000001"}')
    assert isinstance(missing, Malformed) and missing.reason == "missing_field"


@pytest.mark.parametrize(("field", "value", "reason"),
                         [("currency", "EUR\n", "bad_currency"), ("country", "DE\n", "bad_country")])
def test_a_code_with_a_trailing_newline_is_not_a_code(field: str, value: str, reason: str) -> None:
    command = {"v": 1, "type": "authorize", "payment_id": "P1", "account": "ACC00000001", "amount": 500,
               "currency": "EUR", "ts": 1, "country": "DE", field: value}
    decoded = decode_command(b"ACC00000001", msgspec.json.encode(command))
    assert isinstance(decoded, Malformed) and decoded.reason == reason


@pytest.mark.parametrize("value", [
    b'{"v":1,"type":"authorize","payment_id":"P1\xe9","account":"A","amount":1,"currency":"EUR","ts":1}',
    b'{"v":1,"type":"deposit","payment_id":"P\xe9"}',
    b'{"v":1,"type":"deposit","account":"\xff\xfe"}',
], ids=["latin1-id", "latin1-partial", "bad-bytes-in-account"])
def test_invalid_utf8_inside_a_string_is_not_json_and_never_raises(value: bytes) -> None:
    # found by the hostile-input run: msgspec raises UnicodeDecodeError here, not a DecodeError
    malformed = decode_command(b"A", value)
    assert isinstance(malformed, Malformed) and malformed.reason == "not_json"
