"""The wire contract, version 1: every record paystream reads or writes, declared once.

Inputs are validated here, at the edge, and only here. A malformed record never raises:
`decode_command` returns a `Malformed` value naming a stable reason code, which the
engine writes to `payments-dlq`. Everything after the edge is typed.

>>> decode_command(b"A1", b'{"v":1,"type":"deposit","payment_id":"p1","account":"A1",'
...                b'"amount":500,"currency":"EUR","ts":1}').amount
500
>>> decode_command(b"A1", b'{"v":1,"type":"deposit"}').reason
'missing_field'
"""

from __future__ import annotations

import re
from typing import Annotated, Final, Literal

import msgspec
from msgspec import Meta, Struct

from paystream.settings import RuleSettings

WIRE_VERSION: Final = 1

PositiveAmount = Annotated[int, Meta(gt=0, le=10**15)]
NonNegativeAmount = Annotated[int, Meta(ge=0, le=10**15)]
# `\Z`, not `$`: Python's `$` also matches before a trailing newline, which let "EUR\n" through
Currency = Annotated[str, Meta(pattern=r"^[A-Z]{3}\Z")]
Country = Annotated[str, Meta(pattern=r"^[A-Z]{2}\Z")]
Identifier = Annotated[str, Meta(min_length=1, max_length=128)]
EpochMillis = Annotated[int, Meta(ge=0)]


# ---------------------------------------------------------------------------------------
# Inputs: the `payments` command topic
# ---------------------------------------------------------------------------------------


class _Command(Struct, frozen=True, kw_only=True, gc=False, tag_field="type"):
    v: Literal[1]
    payment_id: Identifier
    account: Identifier
    amount: PositiveAmount
    currency: Currency
    ts: EpochMillis


class Deposit(_Command, frozen=True, tag="deposit"):
    """Money arriving from outside: credits `account`."""


class Authorize(_Command, frozen=True, tag="authorize"):
    """A card authorization: places a hold of `amount` on `account`."""

    country: Country
    merchant: str | None = None
    pan: str | None = None  # masked by `decode_command`; never the full number after the edge


class Capture(_Command, frozen=True, tag="capture"):
    """Closes the authorization `auth_id`: debits `amount` (at most the hold), releases the rest."""

    auth_id: Identifier


class Void(_Command, frozen=True, tag="void"):
    """Releases the hold of the authorization `auth_id`."""

    auth_id: Identifier


class Refund(_Command, frozen=True, tag="refund"):
    """Credits back part or all of what the authorization `auth_id` captured."""

    auth_id: Identifier


class Transfer(_Command, frozen=True, tag="transfer"):
    """Debits `account` and credits `to_account` atomically."""

    to_account: Identifier


Command = Deposit | Authorize | Capture | Void | Refund | Transfer
COMMAND_TYPES: Final = ("deposit", "authorize", "capture", "void", "refund", "transfer")


class SourcePosition(Struct, frozen=True, gc=False):
    """Where an input record was read: the evidence that ties an output to its input."""

    topic: str
    partition: int
    offset: int


class Malformed(Struct, frozen=True, gc=False):
    """An input that cannot be processed; it goes to `payments-dlq` with `reason`."""

    reason: str
    error: str


# Stable DLQ reason codes (the `dlq.reason` header). Never rename one.
REASON_CODES: Final = {
    "not_json": "the value is not UTF-8 JSON",
    "not_an_object": "the value is JSON but not an object",
    "empty_value": "the record has no value (a tombstone on a command topic)",
    "missing_field": "a required field is absent",
    "wrong_type": "a field has the wrong JSON type",
    "bad_version": "`v` is not a supported wire version",
    "unknown_type": "`type` is not one of " + ", ".join(COMMAND_TYPES),
    "non_positive_amount": "`amount` is not a positive integer of minor units (or absurdly large)",
    "bad_currency": "`currency` is not three upper-case letters (ISO 4217)",
    "bad_country": "`country` is not two upper-case letters (ISO 3166 alpha-2)",
    "invalid_value": "a field's value is out of its allowed range (empty id, negative ts, ...)",
    "key_mismatch": "the record key is not the command's `account`",
    "ts_out_of_range": "`ts` is more than `rules.event_time.max_skew_ms` after the record's Kafka timestamp, "
                       "or more than `max_lateness_ms` before it",
    "misrouted": "the record is not in the partition its key hashes to (murmur2), "
                 "so its account's state lives elsewhere",
}

_command_decoder: Final[msgspec.json.Decoder[Command]] = msgspec.json.Decoder(Command)

_FIELD_REASONS: Final = {
    "$.amount": "non_positive_amount",
    "$.currency": "bad_currency",
    "$.country": "bad_country",
    "$.v": "bad_version",
}


def _reason_for(error: msgspec.ValidationError, value: bytes | None = None) -> str:
    """Map msgspec's validation message to one stable reason code.

    A typed decoder stops at the first field it cannot use, before it has read the rest: a
    value that is not JSON at all further on (`5<garbage>`, `{"v":2, oops`) is `not_json`,
    so `value` is checked for well-formed JSON here, on the error path only.
    """
    if value is not None:
        try:
            msgspec.json.decode(value)
        except (msgspec.DecodeError, UnicodeDecodeError):
            return "not_json"
        except RecursionError:  # nested deeper than a parser goes: judged by what the typed decoder saw
            pass
    message = str(error)
    path = message.rsplit(" - at `", 1)[1].rstrip("`") if " - at `" in message else "$"
    if message.startswith("Object missing required field"):
        return "missing_field"
    if path == "$.type" or message.startswith("Invalid value") and "`$.type`" in message:
        return "unknown_type"
    if path == "$" and message.startswith("Expected `object`"):
        return "not_an_object"
    if message.startswith("Expected `") and ", got `" in message:
        if path == "$.v":
            return "bad_version"
        return "wrong_type"
    return _FIELD_REASONS.get(path, "invalid_value")


def decode_command(key: bytes | None, value: bytes | None) -> Command | Malformed:
    """Decode and validate one `payments` record; never raises.

    The card number of an authorization is masked before the struct is returned, so no
    code after this function can leak it.
    """
    if value is None:
        return Malformed("empty_value", "a null value on the payments topic")
    try:
        command = _command_decoder.decode(value)
    except msgspec.ValidationError as error:
        return Malformed(_reason_for(error, value), str(error))
    except (msgspec.DecodeError, UnicodeDecodeError) as error:  # bad UTF-8 inside a string raises the latter
        return Malformed("not_json", str(error))
    if key is None or key != command.account.encode():
        return Malformed("key_mismatch", f"record key {key!r} is not account {command.account!r}")
    if type(command) is Authorize and command.pan is not None:
        command = msgspec.structs.replace(command, pan=mask_pan(command.pan))
    return command


# ---------------------------------------------------------------------------------------
# Reference data: the compacted `customer-status` table
# ---------------------------------------------------------------------------------------


class CustomerStatus(Struct, frozen=True, kw_only=True, gc=False):
    """One customer's KYC status, block flag, limits and home; the latest value wins."""

    v: Literal[1]
    account: Identifier
    kyc: Literal["verified", "pending", "rejected"]
    blocked: bool
    single_limit: NonNegativeAmount
    daily_limit: NonNegativeAmount
    home_country: Country
    currency: Currency


_customer_decoder: Final = msgspec.json.Decoder(CustomerStatus)


def decode_customer(key: bytes | None, value: bytes | None) -> CustomerStatus | None | Malformed:
    """Decode one `customer-status` record: a status, `None` for a tombstone, or `Malformed`."""
    if value is None:
        return None
    try:
        status = _customer_decoder.decode(value)
    except msgspec.ValidationError as error:
        return Malformed(_reason_for(error, value), str(error))
    except (msgspec.DecodeError, UnicodeDecodeError) as error:  # bad UTF-8 inside a string raises the latter
        return Malformed("not_json", str(error))
    if key is not None and key != status.account.encode():
        return Malformed("key_mismatch", f"record key {key!r} is not account {status.account!r}")
    return status


# ---------------------------------------------------------------------------------------
# Outputs
# ---------------------------------------------------------------------------------------

Decision = Literal["approved", "declined", "review"]


class PaymentDecision(Struct, frozen=True, kw_only=True, gc=False):
    """`payment-decisions`: exactly one per valid `payment_id`.

    `seq` (added to v1) is the account's event sequence number: the position of this
    command among everything that changed or was decided on the account, credits included.
    `rules_version` (added to v1) is the version of `paystream-rules` the decision was made
    under (0: the configured rules; no change published yet).
    """

    v: int = WIRE_VERSION
    payment_id: str
    account: str
    type: str
    amount: int
    currency: str
    ts: int
    decision: Decision
    reasons: list[str]
    source: SourcePosition
    seq: int
    rules_version: int = 0


class LedgerEntry(Struct, frozen=True, kw_only=True, gc=False):
    """`ledger`: one immutable debit or credit; `entry_id` is `{payment_id}:{direction}`."""

    v: int = WIRE_VERSION
    entry_id: str
    payment_id: str
    account: str
    direction: Literal["debit", "credit"]
    amount: int
    currency: str
    ts: int


class RulesChange(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`paystream-rules` (compacted, one partition, key `rules`): the rules in force from the
    moment an engine process reads it, as a whole. `version` grows with every change; only the
    thresholds and switches of `settings.MUTABLE_RULES` take effect (windows stay as configured).
    `at`: when it was published (ms); `note`: why, for the next person."""

    v: Literal[1] = 1
    version: Annotated[int, Meta(gt=0)]
    rules: RuleSettings
    at: EpochMillis = 0
    note: Annotated[str, Meta(max_length=1_000)] = ""


RULES_KEY: Final = b"rules"
_rules_decoder = msgspec.json.Decoder(RulesChange)


def decode_rules(value: bytes | None) -> RulesChange | Malformed:
    """One `paystream-rules` record, or why it cannot be used (never raises).

    >>> decode_rules(b'{"v":1,"version":2,"rules":{"velocity":{"max_authorizations":3}}}').version
    2
    >>> decode_rules(b'{"v":1,"version":0,"rules":{}}').reason
    'invalid_value'
    """
    if value is None:
        return Malformed("empty_value", "a rules record without a value")
    try:
        return _rules_decoder.decode(value)
    except msgspec.ValidationError as error:
        return Malformed("invalid_value", str(error))
    except (msgspec.DecodeError, UnicodeDecodeError) as error:  # bad UTF-8 inside a string raises the latter
        return Malformed("not_json", str(error))


class Balance(Struct, frozen=True, kw_only=True, gc=False):
    """`balances` (compacted): the account's balance after event `seq`, caused by `cause`."""

    v: int = WIRE_VERSION
    account: str
    currency: str
    posted: int
    held: int
    available: int
    ts: int
    seq: int
    cause: str


class FraudAlert(Struct, frozen=True, kw_only=True, gc=False):
    """`fraud-alerts`: one per rule that sent a payment to review; `alert_id` is `{payment_id}:{rule}`."""

    v: int = WIRE_VERSION
    alert_id: str
    payment_id: str
    account: str
    rule: str
    score: int
    evidence: dict[str, int | str]


class PaymentCompleted(Struct, frozen=True, kw_only=True, gc=False):
    """`payment-completed`: the fact downstream services consume (approved money movements)."""

    v: int = WIRE_VERSION
    payment_id: str
    account: str
    type: str
    amount: int
    currency: str
    ts: int


class Credit(Struct, frozen=True, kw_only=True, gc=False):
    """The internal credits topic: money a transfer owes `account`, applied once by its task."""

    v: int = WIRE_VERSION
    transfer_id: str
    account: str
    from_account: str
    amount: int
    currency: str
    ts: int


_credit_decoder: Final = msgspec.json.Decoder(Credit)


def decode_credit(value: bytes) -> Credit:
    """Decode an internal credit; paystream wrote it, so a failure is a broken invariant."""
    return _credit_decoder.decode(value)


encoder: Final = msgspec.json.Encoder()
encode = encoder.encode


# ---------------------------------------------------------------------------------------
# Card numbers
# ---------------------------------------------------------------------------------------


def mask_pan(pan: str) -> str:
    """Keep at most the first six and last four digits of a card number.

    >>> mask_pan("4111111111111111")
    '411111******1111'
    >>> mask_pan("12345678")
    '****5678'
    """
    if len(pan) >= 14:
        return pan[:6] + "*" * (len(pan) - 10) + pan[-4:]
    if len(pan) > 4:
        return "*" * (len(pan) - 4) + pan[-4:]
    return "*" * len(pan)


# a `pan` sent as a JSON number (a wrong_type record bound for the DLQ) is a card number too
_PAN_FIELD: Final = re.compile(rb'("pan"\s*:\s*")([^"]*)(")|("pan"\s*:\s*)(-?\d+)')
_DIGIT_STRING: Final = re.compile(rb'"(\d{13,19})"')


def _mask_pan_field(match: re.Match[bytes]) -> bytes:
    if match[1] is None:  # the number form: groups 4 and 5
        return match[4] + mask_pan(match[5].decode()).encode()
    return match[1] + mask_pan(match[2].decode("utf-8", "replace")).encode() + match[3]


def redact_pans(raw: bytes) -> bytes:
    """Mask card numbers inside raw bytes bound for the DLQ; the rest stays byte-for-byte.

    >>> redact_pans(b'{"pan":"4111111111111111","x":1}')
    b'{"pan":"411111******1111","x":1}'
    """
    raw = _PAN_FIELD.sub(_mask_pan_field, raw)
    return _DIGIT_STRING.sub(lambda m: b'"' + mask_pan(m[1].decode()).encode() + b'"', raw)


_DIGIT_RUN: Final = re.compile(r"(?<![0-9])[0-9](?:[ -]?[0-9]){12,18}(?![0-9])")


def redact_text(text: str) -> str:
    """Mask every run of 13 to 19 digits (spaces or dashes between them allowed) in free text, such
    as an exception's message: unlike a record, an error says where a card number is by no field.

    >>> redact_text("cannot score card 4111 1111 1111 1111 at 12:00, amount 4200")
    'cannot score card 411111******1111 at 12:00, amount 4200'
    """
    return _DIGIT_RUN.sub(lambda m: mask_pan(re.sub(r"[ -]", "", m[0])), text)
