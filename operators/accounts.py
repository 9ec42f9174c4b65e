"""The state of one account, as docs/RULES.md describes it, and the bookkeeping on it.

`AccountState` is mutated in place by the domain core (one object per account, one task owns
it) and encoded with msgspec msgpack for the changelog. It is `array_like`, so a record carries
no field names, and its authorizations are small lists, not nested Structs.

Memory stays bounded by event time, relative to `newest_ts` (the largest `ts` of any command
decided on the account): remembered `payment_id`s older than the duplicate horizon, and window
entries older than the horizon plus their window, no longer count (see the clarifications in
docs/RULES.md). They are dropped in batches (an eighth of the horizon or window late at most),
so that a busy account pays amortized O(1) per command, not a scan: whether an id or an
entry counts is always decided by its `ts`, never by whether it has been dropped yet.

The windows are kept sorted by `ts` (an out-of-order entry is inserted in place), so a window
count is two binary searches and a window sum one slice.

>>> account = AccountState()
>>> remember_payment(account, "p1", 1_000, horizon_ms=80)
>>> remember_payment(account, "p2", 1_100, horizon_ms=80)
>>> list(account.payment_ids)
['p2']
>>> available(account)
0
"""

from __future__ import annotations

from bisect import bisect_right, insort
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
    - `payment_ids`: remembered `payment_id` → its `ts`; `oldest_id_ts`: the smallest of those ts.
    - `debit_times`, `debit_totals`: the approved debits of the daily window, sorted by time, as
      running totals (so a window sum is one subtraction); `debit_base`: the total before the first.
    - `auth_times`: the `ts` of the decided authorizations of the velocity window, sorted.
    - `last_country`, `last_use_ts`: the last card use ("" when there was none).
    """

    currency: str = ""
    posted: int = 0
    held: int = 0
    seq: int = 0
    newest_ts: int = -1
    authorizations: dict[str, list[int]] = {}
    payment_ids: dict[str, int] = {}
    oldest_id_ts: int = -1
    debit_times: list[int] = []
    debit_totals: list[int] = []
    debit_base: int = 0
    auth_times: list[int] = []
    last_country: str = ""
    last_use_ts: int = 0


def available(account: AccountState) -> int:
    """The money the account can spend: posted minus what authorizations hold."""
    return account.posted - account.held


def remember_payment(account: AccountState, payment_id: str, ts: int, horizon_ms: int) -> None:
    """Remember `payment_id` at event time `ts`; forget, in a batch now and then, the ids the horizon has passed.

    An id counts as remembered while its `ts >= newest_ts - horizon_ms` (the check is
    `operators.rules.is_duplicate`).
    """
    newest_ts = account.newest_ts
    if ts > newest_ts:
        account.newest_ts = newest_ts = ts
    oldest_kept = newest_ts - horizon_ms
    ids = account.payment_ids
    if ts < oldest_kept:  # already past the horizon: forgotten as soon as remembered
        ids.pop(payment_id, None)
        return
    ids[payment_id] = ts
    if ts < account.oldest_id_ts or len(ids) == 1:
        account.oldest_id_ts = ts
    elif account.oldest_id_ts < oldest_kept - (horizon_ms >> 3):
        kept = {known: seen for known, seen in ids.items() if seen >= oldest_kept}
        account.payment_ids = kept
        account.oldest_id_ts = min(kept.values())


def _window_floor(account: AccountState, ts: int, window_ms: int, horizon_ms: int) -> int:
    """Entries at or before this time do not count for a command at `ts` (see the RULES.md clarifications)."""
    oldest_kept = account.newest_ts - horizon_ms
    return (ts if ts > oldest_kept else oldest_kept) - window_ms  # max() without a builtin call: hot path


def daily_spend(account: AccountState, ts: int, window_ms: int, horizon_ms: int) -> int:
    """Approved debits of the daily window ending at `ts` (`ts - window_ms < t <= ts`, among the entries kept)."""
    times = account.debit_times
    low = bisect_right(times, _window_floor(account, ts, window_ms, horizon_ms))
    high = bisect_right(times, ts, low)
    if high == low:
        return 0
    totals = account.debit_totals
    return totals[high - 1] - (totals[low - 1] if low else account.debit_base)


def recent_authorizations(account: AccountState, ts: int, window_ms: int, horizon_ms: int) -> int:
    """Decided authorizations of the velocity window ending at `ts` (`ts - window_ms < t <= ts`, among those kept)."""
    times = account.auth_times
    low = bisect_right(times, _window_floor(account, ts, window_ms, horizon_ms))
    return bisect_right(times, ts, low) - low


def _expired(times: list[int], floor: int, window_ms: int) -> int:
    """How many leading entries to drop now: none until an eighth of the window is overdue, then all expired."""
    if not times or times[0] > floor - (window_ms >> 3):
        return 0
    return bisect_right(times, floor)


def record_debit(account: AccountState, ts: int, amount: int, window_ms: int, horizon_ms: int) -> None:
    """Add an approved debit to the daily window; drop the entries no command within the horizon can count."""
    times = account.debit_times
    totals = account.debit_totals
    floor = account.newest_ts - horizon_ms - window_ms
    expired = _expired(times, floor, window_ms)
    if expired:
        account.debit_base = totals[expired - 1]
        del times[:expired]
        del totals[:expired]
    if ts <= floor:  # so late that no command can count it
        return
    if not times or ts >= times[-1]:
        times.append(ts)
        totals.append((totals[-1] if totals else account.debit_base) + amount)
    else:  # out of order: every later running total grows by `amount`
        at = bisect_right(times, ts)
        times.insert(at, ts)
        totals.insert(at, (totals[at - 1] if at else account.debit_base) + amount)
        totals[at + 1 :] = [total + amount for total in totals[at + 1 :]]


def record_card_use(account: AccountState, country: str, ts: int, window_ms: int, horizon_ms: int) -> None:
    """Add a decided authorization to the velocity window (dropping what can no longer count) and make it the last card use."""
    times = account.auth_times
    floor = account.newest_ts - horizon_ms - window_ms
    expired = _expired(times, floor, window_ms)
    if expired:
        del times[:expired]
    if ts <= floor:  # so late that no command can count it
        pass
    elif not times or ts >= times[-1]:
        times.append(ts)
    else:
        insort(times, ts)
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
