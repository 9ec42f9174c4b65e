"""The state of one account, as docs/RULES.md describes it, and the bookkeeping on it.

`AccountState` is mutated in place by the domain core (one object per account, one task owns
it) and encoded with msgspec msgpack for the changelog. It is `array_like`, so a record carries
no field names, and its authorizations are small lists, not nested Structs.

Memory stays bounded by event time, relative to `newest_ts` (the largest `ts` of any command
decided on the account): remembered `payment_id`s older than the duplicate horizon, closed
authorizations closed before it, and window entries older than the horizon plus their window,
no longer count (see the clarifications in docs/RULES.md). They are dropped in batches (a
sweep every eighth of the horizon of event time; windows an eighth of their window late at
most), so that a busy account pays amortized O(1) per command, not a scan: whether an id, an
authorization or an entry counts is always decided by its `ts`, never by whether it has been
dropped yet.

The windows are kept sorted by `ts`, one entry per distinct `ts` (an out-of-order entry is
inserted in place, an equal one added to its entry), as running totals, so a window sum or
count is two binary searches and one subtraction.

A large account does not fit one changelog record: when its record would pass a size bound,
the commit seals its older entries into numbered pages (`Spill`), each one record of its own
(see operators/account_codec.py). The rules see one account either way: every lookup here also
looks in the sealed pages, and every change to a sealed page marks it dirty for the next commit.

>>> account = AccountState()
>>> remember_payment(account, "p1", 1_000, horizon_ms=80)
>>> remember_payment(account, "p2", 1_100, horizon_ms=80)
>>> list(account.payment_ids)
['p2']
>>> available(account)
0
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from typing import Any, Final

import msgspec
from msgspec import Struct

# The `state` slot of an authorization (an int keeps the changelog record small).
OPEN: Final = 0
CAPTURED: Final = 1
VOIDED: Final = 2
AUTHORIZATION_STATES: Final = ("open", "captured", "voided")

# Slots of an authorization: [held, state, captured, refunded, closed_ts] (a list: mutable and
# compact). `closed_ts`: the `ts` of the capture or void that closed it (0 while open).
HELD: Final = 0
STATE: Final = 1
CAPTURED_AMOUNT: Final = 2
REFUNDED: Final = 3
CLOSED_TS: Final = 4


class Spill(Struct, array_like=True, gc=False):
    """The sealed pages of a large account: each page is one changelog record of its own.

    Page numbers come from `next_page` and are never reused. Oldest first everywhere:
    - `id_pages`: page → remembered `payment_id` → `ts`. Never changed once sealed; a page is
      dropped, oldest first, once every id in it is past the horizon.
    - `auth_pages`: page → `auth_id` → authorization. Changed in place by capture, void and
      refund; forgotten authorizations are evicted from them.
    - `debit_pages`, `debit_bounds` (daily window) and `card_pages`, `card_bounds` (velocity
      window): page `debit_pages[i]` holds the window entries with
      `debit_bounds[i - 1] < t <= debit_bounds[i]`; the newer ones are open (in the account).
    - `sealed_ids` (id → ts) and `sealed_auths` (auth_id → page): indexes over the pages,
      rebuilt on restore.
    - `dirty`, `dropped`: the pages to write, and to delete, at the next commit (both empty
      right after a commit).
    """

    next_page: int = 0
    id_pages: dict[int, dict[str, int]] = {}
    auth_pages: dict[int, dict[str, list[int]]] = {}
    debit_pages: list[int] = []
    debit_bounds: list[int] = []
    card_pages: list[int] = []
    card_bounds: list[int] = []
    sealed_ids: dict[str, int] = {}
    sealed_auths: dict[str, int] = {}
    dirty: set[int] = set()
    dropped: list[int] = []

    def drop(self, page: int) -> None:
        """Delete `page` at the next commit."""
        self.dirty.discard(page)
        self.dropped.append(page)


class AccountState(Struct, array_like=True, gc=False):
    """Everything the rules need to know about one account; see docs/RULES.md, "Per-account state".

    - `currency`: "" until the first approved command or credit sets it, once.
    - `posted`, `held`: minor units; `available = posted - held`.
    - `seq`: events applied or decided so far (decisions and credits).
    - `newest_ts`: the largest `ts` of any command decided on the account (-1: none yet).
    - `authorizations`: `auth_id` → `[held, state, captured, refunded, closed_ts]` (the open ones
      of a spilled account: see `spill`).
    - `payment_ids`: remembered `payment_id` → its `ts` (idem).
    - `next_sweep_ts`: when `newest_ts` reaches it, what the horizon has passed is dropped.
    - `debit_times`, `debit_totals`: the approved debits of the daily window, one entry per distinct
      time, sorted, as running totals (so a window sum is one subtraction); `debit_base`: the total
      before the first.
    - `auth_times`, `auth_totals`, `auth_base`: the same for the decided authorizations of the
      velocity window (a running count).
    - `last_country`, `last_use_ts`: the last card use ("" when there was none).
    - `spill`: the sealed pages of a large account (None: everything is in this record).
    """

    currency: str = ""
    posted: int = 0
    held: int = 0
    seq: int = 0
    newest_ts: int = -1
    authorizations: dict[str, list[int]] = {}
    payment_ids: dict[str, int] = {}
    next_sweep_ts: int = 0
    debit_times: list[int] = []
    debit_totals: list[int] = []
    debit_base: int = 0
    auth_times: list[int] = []
    auth_totals: list[int] = []
    auth_base: int = 0
    last_country: str = ""
    last_use_ts: int = 0
    spill: Spill | None = None


def available(account: AccountState) -> int:
    """The money the account can spend: posted minus what authorizations hold."""
    return account.posted - account.held


def remember_payment(account: AccountState, payment_id: str, ts: int, horizon_ms: int) -> None:
    """Remember `payment_id` at event time `ts`; now and then, drop what the horizon has passed.

    An id counts as remembered while its `ts >= newest_ts - horizon_ms` (the check is
    `operators.rules.is_duplicate`); an id already past the horizon is not kept at all.
    """
    newest_ts = account.newest_ts
    if ts > newest_ts:
        account.newest_ts = newest_ts = ts
    if ts < newest_ts - horizon_ms:  # already past the horizon: forgotten as soon as remembered
        return
    account.payment_ids[payment_id] = ts
    if newest_ts >= account.next_sweep_ts:
        sweep(account, newest_ts - horizon_ms)
        account.next_sweep_ts = newest_ts + (horizon_ms >> 3)


# Applied transfer ids share the remembered ids (and so their eviction and their changelog pages)
# under this prefix; a command's id that starts with NUL is escaped with one more (`payment_key`),
# so the two can never meet.
CREDIT_PREFIX: Final = "\x00\x01"


def payment_key(payment_id: str) -> str:
    r"""The key `payment_id` is remembered under: itself, unless it could pass for an applied credit.

    >>> payment_key("p1"), payment_key("\x00\x01t1")
    ('p1', '\x00\x00\x01t1')
    """
    return "\x00" + payment_id if payment_id[:1] == "\x00" else payment_id


def remember_credit(account: AccountState, transfer_id: str, ts: int, horizon_ms: int) -> bool:
    """Remember that the credit of `transfer_id` (sent at event time `ts`) landed; False if it had already.

    The recipient's own clock is untouched (`newest_ts` moves only with its commands). A credit
    older than the recipient's horizon is not remembered: its once-only guarantee is the credits
    offset that commits with the state (see docs/LIFETIME.md).

    >>> account = AccountState(newest_ts=1_000)
    >>> remember_credit(account, "t1", 990, horizon_ms=80), remember_credit(account, "t1", 990, horizon_ms=80)
    (True, False)
    """
    key = CREDIT_PREFIX + transfer_id
    floor = account.newest_ts - horizon_ms
    seen_at = account.payment_ids.get(key)
    if seen_at is None and account.spill is not None:
        seen_at = remembered_ts(account, key)
    if seen_at is not None and seen_at >= floor:
        return False
    if ts >= floor:
        account.payment_ids[key] = ts
    return True


def remembered_ts(account: AccountState, payment_id: str) -> int | None:
    """The `ts` `payment_id` was remembered with (the newest, if it was remembered twice), or None."""
    seen_at = account.payment_ids.get(payment_id)
    if seen_at is None:
        spill = account.spill
        if spill is not None:  # the open ids are newer than any sealed one
            return spill.sealed_ids.get(payment_id)
    return seen_at


def authorization(account: AccountState, auth_id: str, horizon_ms: int, change: bool = False) -> list[int] | None:
    """The authorization `auth_id` as the rules see it: None if there is none or it is forgotten.

    A closed authorization is forgotten once its `closed_ts < newest_ts - horizon_ms` (RULES.md).
    `change`: the caller may change it, so a sealed page that holds it is written at the next commit.
    """
    found = account.authorizations.get(auth_id)
    if found is None:
        spill = account.spill
        if spill is None:
            return None
        page = spill.sealed_auths.get(auth_id)
        if page is None:
            return None
        found = spill.auth_pages[page][auth_id]
        if change:
            spill.dirty.add(page)
    if found[STATE] != OPEN and found[CLOSED_TS] < account.newest_ts - horizon_ms:
        return None
    return found


def sweep(account: AccountState, floor: int) -> None:
    """Drop the ids with `ts < floor` and the authorizations closed before `floor` (none of them counts any more)."""
    ids = account.payment_ids
    for seen_at in ids.values():
        if seen_at < floor:
            account.payment_ids = {known: seen for known, seen in ids.items() if seen >= floor}
            break
    authorizations = account.authorizations
    forgotten = [auth_id for auth_id, found in authorizations.items()
                 if found[STATE] != OPEN and found[CLOSED_TS] < floor]
    for auth_id in forgotten:
        del authorizations[auth_id]
    spill = account.spill
    if spill is None:
        return
    sealed_ids = spill.sealed_ids
    for page, sealed in list(spill.id_pages.items()):  # oldest first: an older copy of an id goes first
        if max(sealed.values()) >= floor:
            break
        del spill.id_pages[page]
        for payment_id, seen_at in sealed.items():
            if sealed_ids.get(payment_id) == seen_at:
                del sealed_ids[payment_id]
        spill.drop(page)
    sealed_auths = spill.sealed_auths
    for page, sealed_page in list(spill.auth_pages.items()):
        forgotten = [auth_id for auth_id, found in sealed_page.items()
                     if found[STATE] != OPEN and found[CLOSED_TS] < floor]
        if not forgotten:
            continue
        for auth_id in forgotten:
            del sealed_page[auth_id]
            if sealed_auths.get(auth_id) == page:
                del sealed_auths[auth_id]
        if sealed_page:
            spill.dirty.add(page)
        else:
            del spill.auth_pages[page]
            spill.drop(page)


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
    high = bisect_right(times, ts, low)
    if high == low:
        return 0
    totals = account.auth_totals
    return totals[high - 1] - (totals[low - 1] if low else account.auth_base)


def _expired(times: list[int], floor: int, window_ms: int) -> int:
    """How many leading entries to drop now: none until an eighth of the window is overdue, then all expired."""
    if not times or times[0] > floor - (window_ms >> 3):
        return 0
    return bisect_right(times, floor)


def _insert(times: list[int], totals: list[int], base: int, ts: int, amount: int) -> None:
    """Add `amount` at `ts <= times[-1]` (out of order): a new entry, or more on the entry of that time."""
    at = bisect_left(times, ts)
    if times[at] != ts:
        times.insert(at, ts)
        totals.insert(at, totals[at - 1] if at else base)
    totals[at:] = [total + amount for total in totals[at:]]  # every later running total grows too


def _touch(spill: Spill, pages: list[int], bounds: list[int], ts: int) -> None:
    """An entry at `ts` changed: if a sealed page holds it, write that page at the next commit."""
    if bounds and ts <= bounds[-1]:
        spill.dirty.add(pages[bisect_left(bounds, ts)])


def _expire_pages(spill: Spill, pages: list[int], bounds: list[int], floor: int, last_removed: int) -> None:
    """The entries up to `last_removed` (<= `floor`) left the window: drop the pages they emptied."""
    dropped_to = None
    while bounds and bounds[0] <= floor:
        dropped_to = bounds.pop(0)
        spill.drop(pages.pop(0))
    if pages and (dropped_to is None or last_removed > dropped_to):
        spill.dirty.add(pages[0])  # it lost its oldest entries


def record_debit(account: AccountState, ts: int, amount: int, window_ms: int, horizon_ms: int) -> None:
    """Add an approved debit to the daily window; drop the entries no command within the horizon can count."""
    times = account.debit_times
    totals = account.debit_totals
    floor = account.newest_ts - horizon_ms - window_ms
    expired = _expired(times, floor, window_ms)
    if expired:
        last_removed = times[expired - 1]
        account.debit_base = totals[expired - 1]
        del times[:expired]
        del totals[:expired]
        spill = account.spill
        if spill is not None:
            _expire_pages(spill, spill.debit_pages, spill.debit_bounds, floor, last_removed)
    if ts <= floor:  # so late that no command can count it
        return
    if not times or ts > times[-1]:
        times.append(ts)
        totals.append((totals[-1] if totals else account.debit_base) + amount)
    else:
        _insert(times, totals, account.debit_base, ts, amount)
        spill = account.spill
        if spill is not None:
            _touch(spill, spill.debit_pages, spill.debit_bounds, ts)


def record_card_use(account: AccountState, country: str, ts: int, window_ms: int, horizon_ms: int) -> None:
    """Add a decided authorization to the velocity window (dropping what can no longer count) and make it the last
    card use."""
    times = account.auth_times
    totals = account.auth_totals
    floor = account.newest_ts - horizon_ms - window_ms
    expired = _expired(times, floor, window_ms)
    if expired:
        last_removed = times[expired - 1]
        account.auth_base = totals[expired - 1]
        del times[:expired]
        del totals[:expired]
        spill = account.spill
        if spill is not None:
            _expire_pages(spill, spill.card_pages, spill.card_bounds, floor, last_removed)
    if ts <= floor:  # so late that no command can count it
        pass
    elif not times or ts > times[-1]:
        times.append(ts)
        totals.append((totals[-1] if totals else account.auth_base) + 1)
    else:
        _insert(times, totals, account.auth_base, ts, 1)
        spill = account.spill
        if spill is not None:
            _touch(spill, spill.card_pages, spill.card_bounds, ts)
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


def balance_view(state: AccountState) -> dict[str, Any]:
    """What an interactive query shows of an account: its balance, not its rule state.

    >>> balance_view(AccountState(currency="EUR", posted=10_000, held=2_500, seq=3))
    {'currency': 'EUR', 'posted': 10000, 'held': 2500, 'available': 7500, 'seq': 3}
    """
    return {"currency": state.currency, "posted": state.posted, "held": state.held,
            "available": state.posted - state.held, "seq": state.seq}
