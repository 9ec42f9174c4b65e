"""Deterministic synthetic traffic: the customer table, then a realistic stream of payment commands.

Pure: no Kafka, no clock, no I/O. `Traffic(accounts, payments, seed, bad_ratio, start_ts)` is
an iterable of records `(topic_kind, key, value)`, `topic_kind` being `"customers"` or
`"payments"` (the caller maps kinds to topic names). The same arguments always give the same
bytes. Every `customer-status` record comes first, then exactly `payments` records on the
command topic: funding deposits, authorize → capture / void chains, refunds, transfers, and
the cases the rules exist for (limit breaches, velocity bursts, impossible travel, unknown
and blocked customers, currency mismatches, closed or unknown authorizations, byte-identical
re-sends, late event times) plus a `bad_ratio` share of malformed records covering every DLQ
reason code a producer can cause. `Traffic.summary` counts what was yielded so far.

>>> records = list(Traffic(accounts=20, payments=50, seed=7, bad_ratio=0.1))
>>> [kind for kind, _, _ in records].count("payments")
50
"""

from __future__ import annotations

import heapq
import random
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from math import exp, log
from typing import Any, Final, Literal

import msgspec

from paystream.wire import REASON_CODES, CustomerStatus

TopicKind = Literal["customers", "payments"]
Record = tuple[TopicKind, bytes | None, bytes | None]
TimedRecord = tuple[TopicKind, bytes | None, bytes | None, int]  # ... and its Kafka timestamp (ms)

# 2026-01-01T00:00:00Z: a fixed origin so that a seed alone determines every byte
DEFAULT_START_TS: Final = 1_767_225_600_000
MEAN_GAP_MS: Final = 50
MAX_OPEN_AUTHS: Final = 4  # bounded state per account: the generator's memory stays O(accounts)
MAX_CAPTURED: Final = 4

# `misrouted` and `ts_out_of_range` are verdicts on a record's partition and Kafka timestamp,
# not something its bytes can carry
MALFORMED_REASONS: Final = tuple(reason for reason in REASON_CODES if reason not in ("misrouted", "ts_out_of_range"))

# rates per new command (after the funding deposit an account gets on first use)
DUPLICATE_RATE: Final = 0.01
LATE_RATE: Final = 0.005
ANOMALY_RATE: Final = 0.04

_EURO_HOMES: Final = ("DE", "FR", "NL", "ES", "IT", "AT", "BE", "IE", "PT", "FI")
_HOMES: Final = {"EUR": _EURO_HOMES, "USD": ("US", "US", "US", "CA"), "GBP": ("GB",)}
_FAR_FROM: Final = {
    "EUR": ("US", "BR", "JP", "AU", "SG", "ZA", "MX", "IN"),
    "USD": ("DE", "JP", "AU", "SG", "IN", "ZA", "BR"),
    "GBP": ("US", "JP", "AU", "BR", "SG", "ZA"),
}
_ABROAD: Final = ("ES", "IT", "PT", "FR", "US", "TH", "GR", "HR")
_MERCHANTS: Final = (
    "Amazon EU", "Lidl", "Shell", "Uber", "Spotify", "IKEA", "Zalando", "Booking.com", "Apple",
    "Aldi", "Deutsche Bahn", "Ryanair", "Starbucks", "Netflix", "Carrefour", "Tesco", "MediaMarkt",
    "Decathlon",
)
_SINGLE_LIMITS: Final = (50_000, 100_000, 200_000, 300_000, 500_000, 1_000_000)
_DAILY_FACTORS: Final = (2, 3, 3, 5, 10)

_encode: Final = msgspec.json.Encoder().encode


@dataclass
class Summary:
    """What a generator yielded: records per topic kind, valid commands per type, malformed
    records per reason, byte-identical re-sends, and the injected scenarios by name."""

    records: Counter[str] = field(default_factory=Counter)
    customers: Counter[str] = field(default_factory=Counter)
    commands: Counter[str] = field(default_factory=Counter)
    malformed: Counter[str] = field(default_factory=Counter)
    scenarios: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0
    # filled by whoever writes the records somewhere (`paystream generate`), not by the generator
    delivered: int = 0
    delivery_errors: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    def rows(self) -> list[tuple[str, str, int]]:
        """The summary as `(group, name, count)` rows, for a table."""
        rows = [("records", kind, n) for kind, n in sorted(self.records.items())]
        rows += [("customers", name, n) for name, n in sorted(self.customers.items())]
        rows += [("valid", name, n) for name, n in sorted(self.commands.items())]
        rows.append(("valid", "re-sent duplicates", self.duplicates))
        rows += [("malformed", name, n) for name, n in sorted(self.malformed.items())]
        rows += [("scenario", name, n) for name, n in sorted(self.scenarios.items())]
        rows += [("delivery error", name, n) for name, n in sorted(self.delivery_errors.items())]
        return rows


@dataclass(slots=True)
class _Account:
    """One account as the generator sees it: its customer row and the open life cycles."""

    id: str
    key: bytes
    status: CustomerStatus | None  # the row the engine ends up with; None = unknown customer
    currency: str
    country: str  # where its card is used (home, or abroad for the whole run)
    pan: str = ""
    funded: bool = False
    open_auths: list[tuple[str, int]] = field(default_factory=list)  # (auth_id, held)
    captured: list[list[Any]] = field(default_factory=list)  # [auth_id, captured, refunded]

    @property
    def allowed(self) -> bool:
        return self.status is not None and not self.status.blocked and self.status.kyc == "verified"


def account_id(number: int) -> str:
    """The fixed-width account id of account `number`.

    >>> account_id(1234)
    'ACC00001234'
    """
    return f"ACC{number:08d}"


def _luhn_card(rng: random.Random) -> str:
    """A 16-digit Visa-like test card number with a valid Luhn check digit."""
    body = f"4{rng.randrange(10**14):014d}"
    total = 0
    for position, digit in enumerate(reversed(body)):
        value = int(digit) * (2 if position % 2 == 0 else 1)
        total += value - 9 if value > 9 else value
    return body + str((10 - total % 10) % 10)


def _lognormal(rng: random.Random, mu: float, sigma: float) -> int:
    """A positive integer amount, log-normally distributed like real card spend."""
    return int(exp(rng.gauss(mu, sigma))) + 1


class Traffic:
    """Deterministic traffic for `accounts` accounts and `payments` command records (see the module)."""

    def __init__(self, accounts: int, payments: int, seed: int = 42, bad_ratio: float = 0.01,
                 start_ts: int = DEFAULT_START_TS) -> None:
        if accounts < 2 or payments < 0 or not 0.0 <= bad_ratio <= 1.0:
            raise ValueError("need accounts >= 2, payments >= 0 and 0 <= bad_ratio <= 1")
        self.accounts = accounts
        self.payments = payments
        self.seed = seed
        self.bad_ratio = bad_ratio
        self.start_ts = start_ts
        self.summary = Summary()

    def __iter__(self) -> Iterator[Record]:
        run = _Run(self)
        yield from run.customer_records()
        yield from run.payment_records()

    def timed(self) -> Iterator[TimedRecord]:
        """The same records, each with the Kafka timestamp a producer living at event time gives it:
        the generator's clock when the record is made (a late or re-sent command's `ts` lies before it).

        >>> [(kind, timestamp) for kind, _, _, timestamp in Traffic(2, 1, seed=1, start_ts=1_000).timed()]
        [('customers', 1000), ('customers', 1000), ('payments', 1145)]
        """
        run = _Run(self)
        for kind, key, value in run.customer_records():
            yield kind, key, value, run.ts
        for kind, key, value in run.payment_records():
            yield kind, key, value, run.ts


def recent_start_ts(payments: int, now_ms: int) -> int:
    """A start time that ends a run of `payments` commands shortly before `now_ms`.

    Produced with their event times as Kafka timestamps, the records then look like recent
    traffic: inside the brokers' retention and inside the engine's event-time bounds
    (`rules.event_time`), however many payments there are.

    >>> recent_start_ts(1_000, now_ms=10_000_000)
    9885000
    """
    return now_ms - payments * MEAN_GAP_MS * 11 // 10 - 60_000


class _Run:
    """One pass of a `Traffic`: the random stream, the accounts' state and the scheduled records."""

    def __init__(self, traffic: Traffic) -> None:
        self.rng = random.Random(traffic.seed)
        self.total = traffic.payments
        self.bad_ratio = traffic.bad_ratio
        self.summary = traffic.summary
        self.ts = traffic.start_ts
        self.id_prefix = f"P{traffic.seed & 0xFFFFFFFF:08x}"
        self.next_id = 0
        # (due record number, tie-breaker, build the record) for follow-ups of a scenario
        self.scheduled: list[tuple[int, int, Callable[[], tuple[bytes | None, bytes | None]]]] = []
        self.accounts = [self._new_account(number) for number in range(1, traffic.accounts + 1)]
        self.payees: dict[str, list[_Account]] = {}
        for account in self.accounts:
            if account.allowed:
                self.payees.setdefault(account.currency, []).append(account)
        self.unknown = [a for a in self.accounts if a.status is None] or self.accounts[-1:]
        self.refused = [a for a in self.accounts if a.status is not None and not a.allowed] or self.accounts[:1]
        self.tombstoned: list[_Account] = []
        self.updated: list[tuple[_Account, CustomerStatus]] = []

    # -- customers ------------------------------------------------------------------------

    def _new_account(self, number: int) -> _Account:
        rng = self.rng
        draw = rng.random()
        currency = "EUR" if draw < 0.85 else "USD" if draw < 0.95 else "GBP"
        home = rng.choice(_HOMES[currency])
        country = home if rng.random() >= 0.02 else rng.choice(_ABROAD)
        ident = account_id(number)
        account = _Account(ident, ident.encode(), None, currency, country)
        if rng.random() >= 0.02:  # 2% never get a customer row
            draw = rng.random()
            kyc = "verified" if draw < 0.97 else "pending" if draw < 0.985 else "rejected"
            single = rng.choice(_SINGLE_LIMITS)
            account.status = CustomerStatus(
                v=1, account=ident, kyc=kyc, blocked=rng.random() < 0.02, single_limit=single,
                daily_limit=single * rng.choice(_DAILY_FACTORS), home_country=home, currency=currency)
        return account

    def customer_records(self) -> Iterator[Record]:
        """Every customer's row, then a few limit updates (the latest wins) and tombstones."""
        rng, summary = self.rng, self.summary
        for account in self.accounts:
            if account.status is None:
                summary.customers["never registered"] += 1
                continue
            summary.records["customers"] += 1
            summary.customers[account.status.kyc + (" blocked" if account.status.blocked else "")] += 1
            yield "customers", account.key, _encode(account.status)
        for account in self.accounts:
            if account.status is None:
                continue
            draw = rng.random()
            if draw < 0.01:
                account.status = None
                summary.records["customers"] += 1
                summary.customers["tombstone"] += 1
                yield "customers", account.key, None
            elif draw < 0.04:
                single = rng.choice(_SINGLE_LIMITS)
                account.status = msgspec.structs.replace(
                    account.status, single_limit=single, daily_limit=single * rng.choice(_DAILY_FACTORS))
                summary.records["customers"] += 1
                summary.customers["limit update"] += 1
                yield "customers", account.key, _encode(account.status)
        # the recipient pools must reflect the final table
        for pool in self.payees.values():
            pool[:] = [a for a in pool if a.allowed]
        self.unknown = [a for a in self.accounts if a.status is None] or self.unknown

    # -- payments -------------------------------------------------------------------------

    def payment_records(self) -> Iterator[Record]:
        """Exactly `total` command records; scheduled follow-ups are always emitted before the end."""
        rng, scheduled, total = self.rng, self.scheduled, self.total
        summary = self.summary
        uniform = rng.random
        for n in range(total):
            # exponential gaps: a Poisson arrival stream with bursts and lulls
            self.ts += int(-MEAN_GAP_MS * log(1.0 - uniform()))
            if scheduled and (scheduled[0][0] <= n or len(scheduled) >= total - n):
                key, value = heapq.heappop(scheduled)[2]()
            elif uniform() < self.bad_ratio:
                key, value = self._malformed()
            else:
                key, value = self._command(n, total - n - 1 - len(scheduled))
            summary.records["payments"] += 1
            yield "payments", key, value

    def _payment_id(self) -> str:
        self.next_id += 1
        return f"{self.id_prefix}{self.next_id:09d}"

    def _schedule(self, due: int, build: Callable[[], tuple[bytes | None, bytes | None]]) -> None:
        self.next_id += 1  # also a unique tie-breaker, so `build` is never compared
        heapq.heappush(self.scheduled, (due, self.next_id, build))

    def _pick(self) -> _Account:
        # a few heavy users: 5% of the traffic goes to the first 2% of the accounts
        accounts = self.accounts
        draw = self.rng.random()
        if draw < 0.05:
            return accounts[int(draw * 20 * max(1, len(accounts) // 50))]
        return accounts[int(self.rng.random() * len(accounts))]

    def _command(self, n: int, room: int) -> tuple[bytes, bytes]:
        """One new valid command (and maybe scheduled follow-ups, if `room` allows)."""
        rng = self.rng
        account = self._pick()
        if not account.funded:  # accounts are funded on first use
            account.funded = True
            value = self._deposit(account, _lognormal(rng, 12.2, 0.8))
        elif rng.random() < ANOMALY_RATE:
            value = self._anomaly(account, n, room)
        else:
            value = self._everyday(account)
        # room is re-counted: a scenario above may have just scheduled follow-ups
        if self.total - n - 1 - len(self.scheduled) > 0 and rng.random() < DUPLICATE_RATE:
            key = account.key
            self._schedule(n + rng.randrange(1, 200), lambda: self._resend(key, value))
        return account.key, value

    def _resend(self, key: bytes, value: bytes) -> tuple[bytes, bytes]:
        self.summary.duplicates += 1
        return key, value

    def _event_ts(self) -> int:
        # a few producers deliver late: their event time is slightly before what came already
        if self.rng.random() < LATE_RATE:
            self.summary.scenarios["late_event_time"] += 1
            return self.ts - self.rng.randrange(1, 3_000)
        return self.ts

    def _everyday(self, account: _Account) -> bytes:
        """The normal mix: mostly card authorizations closed later, some transfers, refunds, deposits."""
        rng = self.rng
        draw = rng.random()
        if account.open_auths and (draw < 0.45 or len(account.open_auths) >= MAX_OPEN_AUTHS):
            auth_id, held = account.open_auths.pop(int(rng.random() * len(account.open_auths)))
            close = rng.random()
            if close < 0.12:
                return self._void(account, auth_id, held)
            amount = held if close < 0.85 or held < 2 else 1 + int(rng.random() * (held - 1))
            if len(account.captured) >= MAX_CAPTURED:
                account.captured.pop(0)
            account.captured.append([auth_id, amount, 0])
            return self._capture(account, auth_id, amount)
        draw = rng.random()
        if account.captured and draw < 0.08:
            entry = account.captured[int(rng.random() * len(account.captured))]
            left = entry[1] - entry[2]
            if left > 0:
                amount = left if rng.random() < 0.5 else 1 + int(rng.random() * left)
                entry[2] += amount
                return self._refund(account, entry[0], amount)
        if 0.08 <= draw < 0.20:
            pool = self.payees.get(account.currency) or self.accounts
            return self._transfer(account, pool[int(rng.random() * len(pool))], _lognormal(rng, 9.5, 1.0),
                                  account.currency)
        if 0.20 <= draw < 0.24:
            return self._deposit(account, _lognormal(rng, 11.0, 1.0))
        amount = _lognormal(rng, 8.0, 1.0)
        payment_id = self._payment_id()
        account.open_auths.append((payment_id, amount))
        return self._authorize(account, payment_id, amount, account.country)

    def _anomaly(self, account: _Account, n: int, room: int) -> bytes:
        """One of the cases the rules exist for; its name is counted in `summary.scenarios`."""
        rng = self.rng
        status = account.status
        kind = rng.randrange(13)
        if kind == 0 and status is not None:
            self.summary.scenarios["single_limit_breach"] += 1
            return self._authorize(account, self._payment_id(),
                                   status.single_limit + 1 + rng.randrange(status.single_limit), account.country)
        if kind == 1 and status is not None and room >= 12:
            # a deposit big enough, then authorizations at the single limit until the day is over
            times = min(11, status.daily_limit // max(1, status.single_limit) + 1)
            self.summary.scenarios["daily_limit_breach"] += 1
            for step in range(times):
                self._schedule(n + 1 + step * rng.randrange(5, 60),
                               lambda: (account.key, self._authorize(account, self._payment_id(),
                                                                     status.single_limit, account.country)))
            return self._deposit(account, status.single_limit * (times + 1))
        if kind == 2 and room >= 9:
            # card testing: a burst of small authorizations within seconds trips `velocity`
            burst = rng.randrange(6, 10)
            self.summary.scenarios["velocity_burst"] += 1
            for step in range(1, burst):
                self._schedule(n + step * rng.randrange(1, 40),
                               lambda: (account.key, self._authorize(account, self._payment_id(),
                                                                     rng.randrange(100, 2_000), account.country)))
            return self._authorize(account, self._payment_id(), rng.randrange(100, 2_000), account.country)
        if kind == 3 and room >= 1:
            # the same card far away a few seconds to minutes later
            far = rng.choice(_FAR_FROM[account.currency])
            self.summary.scenarios["impossible_travel"] += 1
            self._schedule(n + rng.randrange(20, 2_000),
                           lambda: (account.key, self._authorize(account, self._payment_id(),
                                                                 _lognormal(rng, 8.0, 1.0), far)))
            return self._authorize(account, self._payment_id(), _lognormal(rng, 8.0, 1.0), account.country)
        if kind == 4 and account.open_auths:
            auth_id, held = account.open_auths.pop()
            self.summary.scenarios["capture_exceeds_hold"] += 1
            return self._capture(account, auth_id, held + 1 + rng.randrange(max(1, held // 2)))
        if kind == 5 and account.captured:
            self.summary.scenarios["void_after_capture"] += 1
            return self._void(account, account.captured[-1][0], account.captured[-1][1])
        if kind == 6 and account.captured:
            entry = account.captured[-1]
            self.summary.scenarios["refund_exceeds_captured"] += 1
            return self._refund(account, entry[0], entry[1] - entry[2] + 1 + rng.randrange(1_000))
        if kind == 7:
            self.summary.scenarios["transfer_to_unknown"] += 1
            return self._transfer(account, rng.choice(self.unknown), rng.randrange(100, 50_000), account.currency)
        if kind == 8:
            self.summary.scenarios["transfer_to_refused"] += 1
            return self._transfer(account, rng.choice(self.refused), rng.randrange(100, 50_000), account.currency)
        if kind == 9:
            self.summary.scenarios["transfer_to_self"] += 1
            return self._transfer(account, account, rng.randrange(100, 50_000), account.currency)
        if kind == 10:
            other = [c for c, pool in self.payees.items() if c != account.currency and pool]
            if other:
                self.summary.scenarios["transfer_currency_mismatch"] += 1
                return self._transfer(account, rng.choice(self.payees[rng.choice(other)]), rng.randrange(100, 50_000),
                                      account.currency)
        if kind == 11:
            currency = "USD" if account.currency == "EUR" else "EUR"
            self.summary.scenarios["authorize_currency_mismatch"] += 1
            return self._authorize(account, self._payment_id(), rng.randrange(100, 20_000), account.country, currency)
        self.summary.scenarios["capture_unknown_authorization"] += 1
        return self._capture(account, self._payment_id(), rng.randrange(100, 20_000))

    # -- the wire format (preformatted: this is the hot path) -----------------------------

    def _deposit(self, account: _Account, amount: int) -> bytes:
        self.summary.commands["deposit"] += 1
        return (f'{{"v":1,"type":"deposit","payment_id":"{self._payment_id()}","account":"{account.id}",'
                f'"amount":{amount},"currency":"{account.currency}","ts":{self._event_ts()}}}').encode()

    def _authorize(self, account: _Account, payment_id: str, amount: int, country: str, currency: str = "") -> bytes:
        rng = self.rng
        self.summary.commands["authorize"] += 1
        draw = rng.random()
        extra = f',"merchant":"{_MERCHANTS[int(draw * 1.25 * len(_MERCHANTS))]}"' if draw < 0.8 else ""
        if rng.random() < 0.3:
            account.pan = account.pan or _luhn_card(rng)
            extra += f',"pan":"{account.pan}"'
        return (f'{{"v":1,"type":"authorize","payment_id":"{payment_id}","account":"{account.id}",'
                f'"amount":{amount},"currency":"{currency or account.currency}","ts":{self._event_ts()},'
                f'"country":"{country}"{extra}}}').encode()

    def _closing(self, kind: str, account: _Account, auth_id: str, amount: int) -> bytes:
        self.summary.commands[kind] += 1
        return (f'{{"v":1,"type":"{kind}","payment_id":"{self._payment_id()}","account":"{account.id}",'
                f'"amount":{amount},"currency":"{account.currency}","ts":{self._event_ts()},'
                f'"auth_id":"{auth_id}"}}').encode()

    def _capture(self, account: _Account, auth_id: str, amount: int) -> bytes:
        return self._closing("capture", account, auth_id, amount)

    def _void(self, account: _Account, auth_id: str, amount: int) -> bytes:
        return self._closing("void", account, auth_id, amount)

    def _refund(self, account: _Account, auth_id: str, amount: int) -> bytes:
        return self._closing("refund", account, auth_id, amount)

    def _transfer(self, account: _Account, to: _Account, amount: int, currency: str) -> bytes:
        self.summary.commands["transfer"] += 1
        return (f'{{"v":1,"type":"transfer","payment_id":"{self._payment_id()}","account":"{account.id}",'
                f'"amount":{amount},"currency":"{currency}","ts":{self._event_ts()},'
                f'"to_account":"{to.id}"}}').encode()

    # -- malformed records ----------------------------------------------------------------

    def _malformed(self) -> tuple[bytes | None, bytes | None]:
        """A record the decoder must reject, made from a valid authorization by breaking one thing."""
        rng = self.rng
        account = self._pick()
        reason = rng.choice(MALFORMED_REASONS)
        self.summary.malformed[reason] += 1
        command: dict[str, Any] = {
            "v": 1, "type": "authorize", "payment_id": self._payment_id(), "account": account.id,
            "amount": _lognormal(rng, 8.0, 1.0), "currency": account.currency, "ts": self.ts,
            "country": account.country,
        }
        key: bytes | None = account.key
        if reason == "empty_value":
            return key, None
        if reason == "not_json":
            return key, rng.choice((_encode(command)[:-7], b"<payment id=1/>", b"\xff\xfe\x00garbage", b""))
        if reason == "not_an_object":
            return key, rng.choice((_encode([command]), b'"authorize"', b"42", b"null"))
        if reason == "missing_field":
            del command[rng.choice(("v", "type", "payment_id", "account", "amount", "currency", "ts", "country"))]
        elif reason == "wrong_type":
            name = rng.choice(("amount", "ts", "currency", "payment_id", "country"))
            command[name] = str(command[name]) if isinstance(command[name], int) else rng.randrange(1, 999)
        elif reason == "bad_version":
            command["v"] = rng.choice((0, 2, 99))
        elif reason == "unknown_type":
            command["type"] = rng.choice(("payout", "chargeback", "Authorize", ""))
        elif reason == "non_positive_amount":
            command["amount"] = rng.choice((0, -command["amount"], 10**16))
        elif reason == "bad_currency":
            command["currency"] = rng.choice(("eur", "EURO", "E1", "€"))
        elif reason == "bad_country":
            command["country"] = rng.choice(("Germany", "d", "de", "D3"))
        elif reason == "invalid_value":
            name = rng.choice(("payment_id", "account", "ts"))
            command[name] = -1 if name == "ts" else ""
        elif reason == "key_mismatch":
            other = self.accounts[rng.randrange(len(self.accounts))]
            key = None if other is account else other.key
        return key, _encode(command)


def simple_payments(accounts: int, payments: int, seed: int = 42,
                    start_ts: int = DEFAULT_START_TS) -> Iterator[Record]:
    """The benchmark's simple workload, NOT the wire contract: `payments` JSON payments keyed by
    account, `{"v":1,"type":"payment","payment_id","account","amount","currency":"EUR","ts"}`,
    amounts uniform in 1..50,000 minor units, accounts uniform (the shape KAFKA.md's peer table used).

    >>> next(simple_payments(10, 1, seed=1))[0]
    'payments'
    """
    rng = random.Random(seed)
    randrange = rng.randrange
    prefix = f"P{seed & 0xFFFFFFFF:08x}"
    keys = [account_id(number) for number in range(1, accounts + 1)]
    ts = start_ts
    for n in range(1, payments + 1):
        ts += randrange(100)
        account = keys[randrange(accounts)]
        yield "payments", account.encode(), (
            f'{{"v":1,"type":"payment","payment_id":"{prefix}{n:09d}","account":"{account}",'
            f'"amount":{randrange(1, 50_001)},"currency":"EUR","ts":{ts}}}').encode()
