"""The payment engine's accounts codec: compacted changelog records that rebuild a task's accounts
exactly, each one bounded (`AccountCodec`, the `state.codec.Codec` of the accounts store).

Partition p of the accounts store's changelog holds, latest value per key:
- `account` (its id, UTF-8): the account's record, msgpack `[FORMAT_VERSION, AccountState]`.
  It holds everything of an ordinary account; of a large one, its scalars and its open entries.
- `account + b"\\xff" + page` (the page number in ASCII digits): one sealed page of a large
  account, `[FORMAT_VERSION, IdsPage | AuthorizationsPage | DebitPage | CardPage]`; a tombstone
  (None) once the page is dropped. No account id holds 0xFF (ids are UTF-8), so no page key is
  an account's, and none starts with 0xFF.
- `META_PREFIX + name`: the task's own records (e.g. its input positions), returned raw by the
  restore; never an account.

Bounded by design (the hazard: one busy account's record outgrowing the producer's maximum
message size, so that every replay fails the same way and the cluster crash-loops): an
account's record is written whole while it encodes to at most `SPILL_BYTES` (the common case:
one record per changed account per commit). Above that, the commit seals the account's open
entries (remembered ids, authorizations, window entries) into pages of at most `PAGE_BYTES`
(`seal`), and the record keeps only the scalars. From then on each commit writes the record
(its open entries since the last seal, sealed again once they pass `SPILL_BYTES`) and the pages
that changed (`Spill.dirty`: an authorization captured, voided or refunded, a late window
entry, an eviction) or were dropped (`Spill.dropped`: expired). An entry is at most ~600 bytes
(ids are at most 128 characters), so no record exceeds `MAX_RECORD_BYTES`, whatever the
account's traffic; a record above `state.codec.warn_bytes` (`engine.changelog_record_warn_bytes`)
is logged and counted in `state.codec.stats` all the same.

`AccountCodec.records` does that commit-time bookkeeping on the accounts it writes (sealing,
clearing `dirty` and `dropped`): the runtime calls it once per commit. `AccountCodec.apply` is
its inverse, used by the restores (`state.restore`, `state.disk`): it folds the latest value of
each key into the accounts and rebuilds exactly the in-memory state the commits left.

>>> from operators.accounts import remember_payment
>>> account = AccountState()
>>> for n in range(4_000):  # enough remembered ids to pass SPILL_BYTES
...     remember_payment(account, f"payment-{n:06d}", 1_000 + n, horizon_ms=10**9)
>>> records = ACCOUNT_CODEC.records({"M": account}, ["M"])
>>> len(records) > 1, all(len(value) <= PAGE_BYTES + 1_024 for _, value in records)  # sealed into pages
(True, True)
>>> restored: dict[str, AccountState] = {}
>>> ACCOUNT_CODEC.apply(dict(records), restored); restored == {"M": account}
True
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Mapping
from itertools import accumulate
from operator import attrgetter
from typing import Any, Final, Literal

import msgspec
from msgspec import Struct

from operators.accounts import AccountState, Spill
from state import codec
from state.codec import (
    CHUNK,
    FORMAT_VERSION,
    META_PREFIX,
    ChangelogFormatError,
    _array_header,
    _decode_all,
    check_size,
    decoder,
    format_error,
)

PAGE_SEPARATOR: Final = b"\xff"
SPILL_BYTES: Final = 32 * 1024  # an account record above this has its open entries sealed into pages
PAGE_BYTES: Final = 32 * 1024  # what a sealed page holds at most (give or take one entry)
MAX_RECORD_BYTES: Final = 256 * 1024  # no changelog record exceeds this, by design
WINDOW_PAGE_ENTRIES: Final = PAGE_BYTES // 20  # a window entry is at most 18 bytes: two msgpack ints


class IdsPage(Struct, array_like=True, gc=False, tag=1):
    ids: dict[str, int]


class AuthorizationsPage(Struct, array_like=True, gc=False, tag=2):
    authorizations: dict[str, list[int]]


class DebitPage(Struct, array_like=True, gc=False, tag=3):
    """Daily-window entries: their times and amounts (not running totals, so that a late entry
    in an older page leaves every later page as it was)."""

    times: list[int]
    amounts: list[int]


class CardPage(Struct, array_like=True, gc=False, tag=4):
    """Velocity-window entries: their times and how many authorizations each."""

    times: list[int]
    counts: list[int]


Page = IdsPage | AuthorizationsPage | DebitPage | CardPage


_encoder = msgspec.msgpack.Encoder()
_page_decoder = msgspec.msgpack.Decoder(list[tuple[Literal[1], Page]])  # FORMAT_VERSION
_state_of = attrgetter("state")
_spill_of = attrgetter("spill")


def page_key(account_key: bytes, page: int) -> bytes:
    return account_key + PAGE_SEPARATOR + str(page).encode()


class AccountCodec:
    """The `state.codec.Codec` of `AccountState` values: an account's record, and a large
    account's sealed pages (see the module docstring)."""

    value_type: type = AccountState

    # --- writing ------------------------------------------------------------------------------

    def records(self, data: Mapping[str, Any], changed: Iterable[str]) -> list[tuple[bytes, bytes | None]]:
        """The (key, value) records that make the changelog equal `data` for every account in `changed`
        (a key no longer in `data`: a tombstone).

        One record per account, unless the account is large: then its record and the pages that
        changed. Seals the open entries of an account whose record would pass `SPILL_BYTES`.
        """
        warn = codec.warn_bytes
        limit = min(SPILL_BYTES, warn)
        encode = _encoder.encode
        records: list[tuple[bytes, bytes | None]] = []
        append = records.append
        biggest = 0
        for name in changed:
            state = data.get(name)
            if state is None:  # deleted from the store: a tombstone
                append((name.encode(), None))
                continue
            if state.spill is not None:
                records += _large_account_records(name, state, warn)
                continue
            value = encode((FORMAT_VERSION, state))
            size = len(value)
            if size > biggest:
                biggest = size
            if size > limit:
                if size > SPILL_BYTES:
                    state.spill = Spill()
                    records += _large_account_records(name, state, warn)
                    continue
                _check_size(name, name.encode(), value, warn)
            append((name.encode(), value))
        if biggest > codec.stats.largest_record_bytes:
            codec.stats.largest_record_bytes = biggest
        return records

    # --- reading ------------------------------------------------------------------------------

    def apply(self, latest: dict[bytes, bytes | None], data: dict[str, Any]) -> None:
        """Fold the latest changelog value of each key (account records, pages, tombstones) into `data`.

        `data` may already hold older accounts (a local snapshot): records here win, and a large
        account's pages not named here keep their content. Keys starting with `META_PREFIX` must
        have been taken out. Accounts are decoded in bulk (one C call per `CHUNK`, versions
        checked on the way), their pages only for large accounts. Nothing changes in `data` if a
        record is of another format (`ChangelogFormatError`).
        """
        decode = decoder(AccountState).decode
        page_values: dict[str, dict[int, Page | None]] = {}  # decoded before anything changes in `data`
        keys = list(latest)
        tombstones: set[bytes] = set()
        try:  # the common case, at C speed: only account records (no page, no tombstone) of this version
            decoded = [([key.decode() for key in part], list(map(_state_of, decode(
                            _array_header(len(part)) + b"".join([latest[key] for key in part])))))  # type: ignore[misc]
                       for part in [keys[start:start + CHUNK] for start in range(0, len(keys), CHUNK)]]
        except (TypeError, UnicodeDecodeError, msgspec.DecodeError):  # a tombstone, a page, another version
            tombstones = {key for key, value in latest.items() if value is None}
            for key in [key for key in latest if PAGE_SEPARATOR in key]:
                tombstones.discard(key)
                if not key.startswith(META_PREFIX):  # the task's own records are the caller's
                    owner, _, number = key.partition(PAGE_SEPARATOR)
                    value = latest[key]
                    name = owner.decode()
                    page_values.setdefault(name, {})[int(number)] = (
                        None if value is None else _decode_page(name, int(number), value))
            keys = [key for key in keys if key not in tombstones and PAGE_SEPARATOR not in key]
            decoded = [([key.decode() for key in part], list(map(_state_of, _decode_all(part, latest, decode))))
                       for part in [keys[start:start + CHUNK] for start in range(0, len(keys), CHUNK)]]
        for key in tombstones:
            data.pop(key.decode(), None)
        before: dict[str, AccountState] = {}  # large accounts as they were, whose record is replaced here
        for names, states in decoded:
            for name in [name for name, spill in zip(names, map(_spill_of, states), strict=True) if spill is not None]:
                page_values.setdefault(name, {})
                previous = data.get(name)
                if previous is not None and previous.spill is not None:
                    before[name] = previous
            data.update(zip(names, states, strict=True))
        for name, changes in page_values.items():
            account = data.get(name)
            if account is None:
                continue  # pages of an account without a record (never written so): nothing to rebuild
            if latest.get(name.encode()) is not None:  # a new record: the pages it had, changed by those read here
                previous = before.get(name)
            else:  # only pages changed: the account's record as it was
                previous = account
                account = core_view(account) if account.spill is not None else account
            pages = pages_of(previous) if previous is not None else {}
            for page, content in changes.items():
                if content is None:
                    pages.pop(page, None)
                else:
                    pages[page] = content
            data[name] = rebuild(account, pages)

    def owner(self, key: bytes) -> bytes:
        """The account a record belongs to: a page's account, else the key itself."""
        return key.partition(PAGE_SEPARATOR)[0]

    def companions(self, key: bytes, value: Any) -> bytes | None:
        """A large account's pages: the records under `key + PAGE_SEPARATOR`."""
        return key + PAGE_SEPARATOR if value.spill is not None else None

    def __repr__(self) -> str:
        return "AccountCodec()"


ACCOUNT_CODEC: Final = AccountCodec()


# --- a large account's records and pages ------------------------------------------------------------


def _check_size(name: str, key: bytes, value: bytes | None, warn: int) -> None:
    """The alarm (`state.codec.check_size`): account id, page and size only."""
    check_size(value, warn, account=name, page=key.partition(PAGE_SEPARATOR)[2].decode() or None,
               limit_bytes=MAX_RECORD_BYTES)


def _large_account_records(name: str, account: AccountState, warn: int) -> list[tuple[bytes, bytes | None]]:
    """The record of a large account, and its pages changed or dropped since the last commit."""
    spill = account.spill
    assert spill is not None
    encode = _encoder.encode
    _split_grown_window_pages(account, spill)
    value = encode((FORMAT_VERSION, core_view(account)))
    if len(value) > SPILL_BYTES:
        seal(account)
        value = encode((FORMAT_VERSION, core_view(account)))  # after every page number it took
    key = name.encode()
    records: list[tuple[bytes, bytes | None]] = [(key, value)]
    for page in sorted(spill.dirty):
        records.append((page_key(key, page), encode((FORMAT_VERSION, page_of(account, page)))))
    records += [(page_key(key, page), None) for page in spill.dropped]
    spill.dirty.clear()
    spill.dropped.clear()
    for record_key, record_value in records:
        _check_size(name, record_key, record_value, warn)
    return records


def core_view(account: AccountState) -> AccountState:
    """What a large account's own record holds: everything but its sealed pages and their indexes."""
    spill = account.spill
    assert spill is not None
    debit_cut = bisect_right(account.debit_times, spill.debit_bounds[-1]) if spill.debit_bounds else 0
    card_cut = bisect_right(account.auth_times, spill.card_bounds[-1]) if spill.card_bounds else 0
    return msgspec.structs.replace(
        account,
        debit_times=account.debit_times[debit_cut:], debit_totals=account.debit_totals[debit_cut:],
        auth_times=account.auth_times[card_cut:], auth_totals=account.auth_totals[card_cut:],
        spill=Spill(next_page=spill.next_page),
    )


def _new_page(spill: Spill) -> int:
    page = spill.next_page
    spill.next_page += 1
    spill.dirty.add(page)
    return page


def _chunks(items: list[tuple[str, Any]], wrap: type) -> list[list[tuple[str, Any]]]:
    """`items` cut into runs whose page encodes to at most `PAGE_BYTES` (or a single entry)."""
    size = len(_encoder.encode(wrap(dict(items))))
    if size <= PAGE_BYTES or len(items) == 1:
        return [items]
    pieces = -(-size // PAGE_BYTES)
    step = -(-len(items) // pieces)
    out: list[list[tuple[str, Any]]] = []
    for start in range(0, len(items), step):  # each piece checked again: ids differ in length
        out += _chunks(items[start:start + step], wrap)
    return out


def seal(account: AccountState) -> None:
    """Move the account's open entries into new sealed pages (written at this commit)."""
    spill = account.spill
    if spill is None:
        spill = account.spill = Spill()
    if account.payment_ids:
        for chunk in _chunks(list(account.payment_ids.items()), IdsPage):
            page = _new_page(spill)
            spill.id_pages[page] = ids = dict(chunk)
            spill.sealed_ids.update(ids)
        account.payment_ids = {}
    if account.authorizations:
        sealed_auths = spill.sealed_auths
        for chunk in _chunks(list(account.authorizations.items()), AuthorizationsPage):
            page = _new_page(spill)
            spill.auth_pages[page] = dict(chunk)
            for auth_id, _ in chunk:
                sealed_auths[auth_id] = page
        account.authorizations = {}
    _seal_window(spill, account.debit_times, spill.debit_pages, spill.debit_bounds)
    _seal_window(spill, account.auth_times, spill.card_pages, spill.card_bounds)


def _seal_window(spill: Spill, times: list[int], pages: list[int], bounds: list[int]) -> None:
    start = bisect_right(times, bounds[-1]) if bounds else 0
    for at in range(start, len(times), WINDOW_PAGE_ENTRIES):
        pages.append(_new_page(spill))
        bounds.append(times[min(at + WINDOW_PAGE_ENTRIES, len(times)) - 1])


def _window_range(times: list[int], bounds: list[int], index: int) -> tuple[int, int]:
    """The positions in `times` of the entries of the `index`-th sealed page."""
    start = bisect_right(times, bounds[index - 1]) if index else 0
    return start, bisect_right(times, bounds[index], start)


def _split_grown_window_pages(account: AccountState, spill: Spill) -> None:
    """A window page that late entries grew past `WINDOW_PAGE_ENTRIES` becomes several pages."""
    for times, pages, bounds in ((account.debit_times, spill.debit_pages, spill.debit_bounds),
                                 (account.auth_times, spill.card_pages, spill.card_bounds)):
        for page in [page for page in pages if page in spill.dirty]:
            index = pages.index(page)
            start, end = _window_range(times, bounds, index)
            if end - start <= WINDOW_PAGE_ENTRIES:
                continue
            spill.drop(page)
            cuts = range(start, end, WINDOW_PAGE_ENTRIES)
            pages[index:index + 1] = [_new_page(spill) for _ in cuts]
            bounds[index:index + 1] = [times[min(at + WINDOW_PAGE_ENTRIES, end) - 1] for at in cuts]


def page_of(account: AccountState, page: int) -> Page:
    """The content of one sealed page, as its record holds it."""
    spill = account.spill
    assert spill is not None
    ids = spill.id_pages.get(page)
    if ids is not None:
        return IdsPage(ids)
    authorizations = spill.auth_pages.get(page)
    if authorizations is not None:
        return AuthorizationsPage(authorizations)
    if page in spill.debit_pages:
        times, totals, base = account.debit_times, account.debit_totals, account.debit_base
        start, end = _window_range(times, spill.debit_bounds, spill.debit_pages.index(page))
        return DebitPage(times[start:end], _differences(totals, base, start, end))
    if page in spill.card_pages:
        times, totals, base = account.auth_times, account.auth_totals, account.auth_base
        start, end = _window_range(times, spill.card_bounds, spill.card_pages.index(page))
        return CardPage(times[start:end], _differences(totals, base, start, end))
    raise KeyError(f"no sealed page {page}")


def _differences(totals: list[int], base: int, start: int, end: int) -> list[int]:
    previous = [totals[start - 1] if start else base] + totals[start:end - 1]
    return [total - before for total, before in zip(totals[start:end], previous, strict=False)]


def pages_of(account: AccountState) -> dict[int, Page]:
    """Every sealed page of `account` (none if it has no `spill`)."""
    spill = account.spill
    if spill is None:
        return {}
    pages = [*spill.id_pages, *spill.auth_pages, *spill.debit_pages, *spill.card_pages]
    return {page: page_of(account, page) for page in pages}


# --- rebuilding ------------------------------------------------------------------------------


def _decode_page(name: str, page: int, value: bytes) -> Page:
    try:
        return _page_decoder.decode(_array_header(1) + value)[0][1]
    except (msgspec.ValidationError, msgspec.DecodeError) as error:
        key = page_key(name.encode(), page)
        raise format_error(key, value) or ChangelogFormatError(
            f"changelog page {key!r} does not decode: {error}") from error


def rebuild(core: AccountState, pages: dict[int, Page]) -> AccountState:
    """A large account from its own record and its sealed pages: the state its last commit left."""
    spill = core.spill
    if spill is None:
        spill = core.spill = Spill()
    id_pages: dict[int, dict[str, int]] = {}
    auth_pages: dict[int, dict[str, list[int]]] = {}
    debit: list[tuple[int, DebitPage]] = []
    card: list[tuple[int, CardPage]] = []
    for page in sorted(pages):
        content = pages[page]
        if type(content) is IdsPage:
            id_pages[page] = content.ids
        elif type(content) is AuthorizationsPage:
            auth_pages[page] = content.authorizations
        elif type(content) is DebitPage:
            debit.append((page, content))
        else:
            card.append((page, content))  # type: ignore[arg-type]
    sealed_ids: dict[str, int] = {}
    for ids in id_pages.values():
        sealed_ids.update(ids)
    sealed_auths = {auth_id: page for page, authorizations in auth_pages.items() for auth_id in authorizations}
    debit.sort(key=lambda item: item[1].times[-1])
    card.sort(key=lambda item: item[1].times[-1])
    core.debit_times, core.debit_totals = _window(debit, core.debit_base, core.debit_times, core.debit_totals)
    core.auth_times, core.auth_totals = _window(card, core.auth_base, core.auth_times, core.auth_totals)
    core.spill = Spill(
        next_page=spill.next_page, id_pages=id_pages, auth_pages=auth_pages,
        debit_pages=[page for page, _ in debit], debit_bounds=[content.times[-1] for _, content in debit],
        card_pages=[page for page, _ in card], card_bounds=[content.times[-1] for _, content in card],
        sealed_ids=sealed_ids, sealed_auths=sealed_auths,
    )
    return core


def _window(pages: list[tuple[int, Any]], base: int, tail_times: list[int],
            tail_totals: list[int]) -> tuple[list[int], list[int]]:
    """A window's sorted times and running totals: its sealed pages, then its open tail."""
    times: list[int] = []
    amounts: list[int] = []
    for _, content in pages:
        times += content.times
        amounts += content.amounts if type(content) is DebitPage else content.counts
    return times + tail_times, list(accumulate(amounts, initial=base))[1:] + tail_totals
