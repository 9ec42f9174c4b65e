"""The state of one account, as docs/RULES.md describes it, and the bookkeeping on it.

`AccountState` is mutated in place by the domain core (one object per account, one task owns
it) and encoded with msgspec msgpack for the changelog. It is `array_like`, so a record carries
no field names, and its authorizations are small lists, not nested Structs.

Memory stays bounded by event time, relative to `newest_ts` (the largest `ts` of any command
decided on the account): remembered `payment_id`s older than the duplicate horizon, and window
entries older than the horizon plus their window, no longer count (see the clarifications in
docs/RULES.md) and are physically dropped from the front of their insertion-ordered containers.

>>> account = AccountState()
>>> remember_payment(account, "p1", 1_000, horizon_ms=10)
>>> remember_payment(account, "p2", 1_011, horizon_ms=10)
>>> list(account.payment_ids)
['p2']
>>> available(account)
0
"""

from __future__ import annotations

from typing import Final

import msgspec
from msgspec import Struct

# The `state` slot of an authorization (an int keeps the changelog record small).
OPEN: Final = 0
CAPTURED: Final = 1
VOIDED: Final = 2
AUTHORIZATION_STATES: Final = ("open", "captured", "voided")

# Slots of an authorization: [held, state, captured, refunded] (a list: mutable and compact).
HELD: Final = 0
STATE: Final = 1
CAPTURED_AMOUNT: Final = 2
REFUNDED: Final = 3


class AccountState(Struct, array_like=True, gc=False):
    """Everything the rules need to know about one account; see docs/RULES.md, "Per-account state".

    - `currency`: "" until the first approved command or credit sets it, once.
    - `posted`, `held`: minor units; `available = posted - held`.
    - `seq`: events applied or decided so far (decisions and credits).
    - `newest_ts`: the largest `ts` of any command decided on the account (-1: none yet).
    - `authorizations`: `auth_id` → `[held, state, captured, refunded]`.
    - `payment_ids`: remembered `payment_id` → its `ts`, in insertion order.
    - `daily`: the approved debits of the daily window, `(ts, amount)`.
    - `auth_times`: the `ts` of the decided authorizations of the velocity window.
    - `last_country`, `last_use_ts`: the last card use ("" when there was none).
    """

    currency: str = ""
    posted: int = 0
    held: int = 0
    seq: int = 0
    newest_ts: int = -1
    authorizations: dict[str, list[int]] = {}
    payment_ids: dict[str, int] = {}
    daily: list[tuple[int, int]] = []
    auth_times: list[int] = []
    last_country: str = ""
    last_use_ts: int = 0


def available(account: AccountState) -> int:
    """The money the account can spend: posted minus what authorizations hold."""
    return account.posted - account.held


def remember_payment(account: AccountState, payment_id: str, ts: int, horizon_ms: int) -> None:
    """Remember `payment_id` at event time `ts` and forget the ids the horizon has passed.

    An id counts as remembered while its `ts >= newest_ts - horizon_ms` (the check is
    `operators.rules.is_duplicate`); physically, expired ids leave from the front.
    """
    ids = account.payment_ids
    if payment_id in ids:
        del ids[payment_id]  # forgotten already; re-remembered at the back with its new ts
    ids[payment_id] = ts
    if ts > account.newest_ts:
        account.newest_ts = ts
    _forget_payments(ids, account.newest_ts - horizon_ms)


def _forget_payments(ids: dict[str, int], oldest_kept: int) -> None:
    """Drop expired ids from the front; a late-arriving old id waits behind newer ones (it no longer counts)."""
    expired = None
    for payment_id, ts in ids.items():
        if ts >= oldest_kept:
            break
        if expired is None:
            expired = [payment_id]
        else:
            expired.append(payment_id)
    if expired is not None:
        for payment_id in expired:
            del ids[payment_id]


def daily_spend(account: AccountState, ts: int, window_ms: int, horizon_ms: int) -> int:
    """Approved debits of the daily window ending at `ts` (`ts - window_ms < t <= ts`, among the entries kept)."""
    floor = max(ts, account.newest_ts - horizon_ms) - window_ms
    return sum([amount for t, amount in account.daily if floor < t <= ts])


def recent_authorizations(account: AccountState, ts: int, window_ms: int, horizon_ms: int) -> int:
    """Decided authorizations of the velocity window ending at `ts` (`ts - window_ms < t <= ts`, among those kept)."""
    floor = max(ts, account.newest_ts - horizon_ms) - window_ms
    return sum([1 for t in account.auth_times if floor < t <= ts])


def record_debit(account: AccountState, ts: int, amount: int, window_ms: int, horizon_ms: int) -> None:
    """Add an approved debit to the daily window; drop, from the front, entries no command within the horizon can count."""
    daily = account.daily
    daily.append((ts, amount))
    floor = account.newest_ts - horizon_ms - window_ms
    if daily[0][0] <= floor:
        expired = 0
        for t, _ in daily:
            if t > floor:
                break
            expired += 1
        del daily[:expired]


def record_card_use(account: AccountState, country: str, ts: int, window_ms: int, horizon_ms: int) -> None:
    """Add a decided authorization to the velocity window (dropping what can no longer count) and make it the last card use."""
    times = account.auth_times
    times.append(ts)
    floor = account.newest_ts - horizon_ms - window_ms
    if times[0] <= floor:
        expired = 0
        for t in times:
            if t > floor:
                break
            expired += 1
        del times[:expired]
    account.last_country = country
    account.last_use_ts = ts


_changelog_encoder: Final = msgspec.msgpack.Encoder()
_changelog_decoder: Final = msgspec.msgpack.Decoder(AccountState)


def encode_account(account: AccountState) -> bytes:
    """The account as one compact msgpack changelog value."""
    return _changelog_encoder.encode(account)


def decode_account(data: bytes) -> AccountState:
    """An account back from its changelog value."""
    return _changelog_decoder.decode(data)
