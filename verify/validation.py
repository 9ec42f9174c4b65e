"""The reference model's own reading of the wire contract: which input records are valid.

Written from SPEC.md ("Wire contract, version 1") and the reason codes, deliberately without
the engine's decoder, so that a mistake in one is found by the other. Where a record has
several problems, which code the engine names depends on its decoder's field order; the
verdict then carries `reason=None` and the auditor checks only that the record is in the DLQ.

>>> payment_partition(b"21", 1 << 31)  # Kafka's UtilsTest: murmur2("21") == -973932308
1173551340
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, Final

import msgspec
from msgspec import Struct

COMMAND_TYPES: Final = ("deposit", "authorize", "capture", "void", "refund", "transfer")
KYC_STATES: Final = ("verified", "pending", "rejected")
MAX_AMOUNT: Final = 10**15
_CURRENCY: Final = re.compile(r"[A-Z]{3}")
_COUNTRY: Final = re.compile(r"[A-Z]{2}")


class SourcePosition(Struct, frozen=True, gc=False, array_like=True):
    """Where an input record sits: (topic, partition, offset)."""

    topic: str
    partition: int
    offset: int


class InputRecord(Struct, frozen=True, gc=False):
    """One record of a topic, as read: the bytes, the headers and where they were."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()
    timestamp: int | None = None  # the record's Kafka timestamp (ms), where it has one


class Command(Struct, frozen=True, kw_only=True, gc=False):
    """A well-formed payment command; optional fields are `None` where the type has none."""

    type: str
    payment_id: str
    account: str
    amount: int
    currency: str
    ts: int
    auth_id: str | None = None
    to_account: str | None = None
    country: str | None = None
    source: SourcePosition


class Invalid(Struct, frozen=True, gc=False):
    """A record the engine must send to `payments-dlq`.

    `problems` lists every reason code that applies; `reason` is the one the DLQ record must
    carry when that is unambiguous (a single distinct code), else `None`.
    """

    record: InputRecord
    problems: tuple[str, ...]

    @property
    def reason(self) -> str | None:
        return self.problems[0] if len(set(self.problems)) == 1 else None


class Customer(Struct, frozen=True, kw_only=True, gc=False):
    """A `customer-status` row."""

    account: str
    kyc: str
    blocked: bool
    single_limit: int
    daily_limit: int
    home_country: str
    currency: str


# ---------------------------------------------------------------------------------------
# Partitioning: Java's org.apache.kafka.common.utils.Utils.murmur2
# ---------------------------------------------------------------------------------------

_M: Final = 0x5BD1E995
_MASK: Final = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash of `data` as an unsigned 32-bit value (Java's int, reinterpreted)."""
    length = len(data)
    h = (0x9747B28C ^ length) & _MASK
    whole = length - length % 4
    for i in range(0, whole, 4):
        k = data[i] | data[i + 1] << 8 | data[i + 2] << 16 | data[i + 3] << 24
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    tail = length % 4
    # Java's switch falls through: 3 → 2 → 1
    if tail == 3:
        h ^= data[whole + 2] << 16
    if tail >= 2:
        h ^= data[whole + 1] << 8
    if tail >= 1:
        h ^= data[whole]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


@lru_cache(maxsize=1 << 16)  # accounts repeat; hashing in Python is the slow part of validation
def payment_partition(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner gives `key`: `(murmur2 & 0x7fffffff) % n`."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


# ---------------------------------------------------------------------------------------
# Payments
# ---------------------------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return type(value) is int  # JSON true/false decode to bool, which must not count


def _identifier_problem(value: Any) -> str | None:
    if not isinstance(value, str):
        return "wrong_type"
    if not 1 <= len(value) <= 128:
        return "invalid_value"
    return None


def _field_problems(body: dict[str, Any], kind: str) -> list[str]:
    """Every contract violation among the fields of a command of type `kind`."""
    problems: list[str] = []
    required = ["v", "payment_id", "account", "amount", "currency", "ts"]
    required += {"capture": ["auth_id"], "void": ["auth_id"], "refund": ["auth_id"],
                 "transfer": ["to_account"], "authorize": ["country"]}.get(kind, [])
    for name in required:
        if name not in body:
            problems.append("missing_field")
    if "v" in body and not (_is_int(body["v"]) and body["v"] == 1):
        problems.append("bad_version")
    for name in ("payment_id", "account") + (("auth_id",) if kind in ("capture", "void", "refund") else ()) + (
        ("to_account",) if kind == "transfer" else ()
    ):
        if name in body and (problem := _identifier_problem(body[name])):
            problems.append(problem)
    if "amount" in body:
        amount = body["amount"]
        if not _is_int(amount):
            problems.append("wrong_type")
        elif not 0 < amount <= MAX_AMOUNT:
            problems.append("non_positive_amount")
    if "currency" in body:
        currency = body["currency"]
        if not isinstance(currency, str):
            problems.append("wrong_type")
        elif not _CURRENCY.fullmatch(currency):
            problems.append("bad_currency")
    if "ts" in body:
        if not _is_int(body["ts"]):
            problems.append("wrong_type")
        elif body["ts"] < 0:
            problems.append("invalid_value")
    if kind == "authorize":
        if "country" in body:
            if not isinstance(body["country"], str):
                problems.append("wrong_type")
            elif not _COUNTRY.fullmatch(body["country"]):
                problems.append("bad_country")
        for optional in ("merchant", "pan"):
            if body.get(optional) is not None and not isinstance(body[optional], str):
                problems.append("wrong_type")
    return problems


def _body_problems(key: bytes | None, value: bytes | None) -> tuple[list[str], dict[str, Any] | None]:
    """The problems of one payments value (ignoring its partition), and the parsed object."""
    if value is None:
        return ["empty_value"], None
    try:
        body = msgspec.json.decode(value)
    except (msgspec.DecodeError, UnicodeDecodeError):  # bad UTF-8 inside a string raises the latter
        return ["not_json"], None
    except RecursionError:  # nested deeper than a parser goes: not a command, whichever way it is read
        return ["not_json", "not_an_object"], None
    if not isinstance(body, dict):
        return ["not_an_object"], None
    # the type decides which fields are required, so a bad type is the only problem one can name
    if "type" not in body:
        return ["missing_field"], None
    if body["type"] not in COMMAND_TYPES:
        return ["unknown_type"], None
    problems = _field_problems(body, body["type"])
    if not problems and (key is None or key != body["account"].encode()):
        problems.append("key_mismatch")
    return problems, body


def classify_payment(record: InputRecord, partitions: int | None,
                     event_time: tuple[int, int] | None = None) -> Command | Invalid:
    """Validate one `payments` record; `partitions` (when known) enables the `misrouted` check,
    `event_time = (max_skew_ms, max_lateness_ms)` the `ts_out_of_range` check against the
    record's Kafka timestamp (where the record has one).

    >>> good = b'{"v":1,"type":"deposit","payment_id":"p","account":"A","amount":5,"currency":"EUR","ts":5000}'
    >>> classify_payment(InputRecord("payments", 0, 0, b"A", good, timestamp=1000), None, (3000, 9000)).problems
    ('ts_out_of_range',)
    >>> classify_payment(InputRecord("payments", 0, 0, b"A", good, timestamp=2000), None, (3000, 9000)).ts
    5000
    """
    problems, body = _body_problems(record.key, record.value)
    if (event_time is not None and record.timestamp is not None and body is not None and not problems
            and not record.timestamp - event_time[1] <= body["ts"] <= record.timestamp + event_time[0]):
        problems.append("ts_out_of_range")
    if partitions and record.key is not None and payment_partition(record.key, partitions) != record.partition:
        problems.append("misrouted")
    if problems or body is None:
        return Invalid(record, tuple(problems))
    kind = body["type"]
    return Command(
        type=kind,
        payment_id=body["payment_id"],
        account=body["account"],
        amount=body["amount"],
        currency=body["currency"],
        ts=body["ts"],
        auth_id=body["auth_id"] if kind in ("capture", "void", "refund") else None,
        to_account=body["to_account"] if kind == "transfer" else None,
        country=body["country"] if kind == "authorize" else None,
        source=SourcePosition(record.topic, record.partition, record.offset),
    )


# ---------------------------------------------------------------------------------------
# Customers
# ---------------------------------------------------------------------------------------


def classify_customer(key: bytes | None, value: bytes | None) -> Customer | None | str:
    """A `customer-status` row, `None` for a tombstone, or the reason code it is malformed."""
    if value is None:
        return None
    try:
        body = msgspec.json.decode(value)
    except (msgspec.DecodeError, UnicodeDecodeError):  # bad UTF-8 inside a string raises the latter
        return "not_json"
    if not isinstance(body, dict):
        return "not_an_object"
    fields = ("v", "account", "kyc", "blocked", "single_limit", "daily_limit", "home_country", "currency")
    if any(name not in body for name in fields):
        return "missing_field"
    if not (_is_int(body["v"]) and body["v"] == 1):
        return "bad_version"
    if _identifier_problem(body["account"]) or body["kyc"] not in KYC_STATES or type(body["blocked"]) is not bool:
        return "invalid_value"
    for limit in ("single_limit", "daily_limit"):
        if not _is_int(body[limit]) or not 0 <= body[limit] <= MAX_AMOUNT:
            return "invalid_value"
    if not isinstance(body["home_country"], str) or not _COUNTRY.fullmatch(body["home_country"]):
        return "bad_country"
    if not isinstance(body["currency"], str) or not _CURRENCY.fullmatch(body["currency"]):
        return "bad_currency"
    if key is not None and key != body["account"].encode():
        return "key_mismatch"
    return Customer(**{name: body[name] for name in fields if name != "v"})


def customer_table(records: list[tuple[bytes | None, bytes | None]]) -> dict[str, Customer]:
    """The table the compacted topic denotes: the latest row per key wins, a tombstone removes it.

    Malformed rows change nothing.
    """
    table: dict[str, Customer] = {}
    for key, value in records:
        row = classify_customer(key, value)
        if row is None:
            if key is not None:
                table.pop(key.decode("utf-8", "replace"), None)
        elif isinstance(row, Customer):
            table[row.account] = row
    return table
