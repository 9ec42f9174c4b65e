"""The `customer-status` table, joined as a global table (like Kafka Streams' `GlobalKTable`).

Every process holds all customers: at start the whole compacted topic is read to its end
before any payment is processed (so decisions see the reference data that preceded them),
then a background thread keeps following it. The latest value wins; a tombstone removes the
customer.

The table never dies quietly. Any bytes the topic holds are folded without raising: a record
the table cannot use (a key that is not UTF-8, a value that is not a customer, a row under
another account's key, a tombstone without a key) is counted in `skipped` by reason, logged
with its partition and offset (card numbers masked), and skipped; the record stays in the
topic. If the follower thread dies anyway (a fatal consumer error), `check()` raises, so the
engine stops and restarts instead of deciding on a frozen table.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Final

from paystream import logs
from paystream.settings import Settings
from paystream.wire import CustomerStatus, Malformed, decode_customer, mask_pan, redact_pans
from state.followed import FollowedTopic, shared

# How much of a key or decoder error a warning shows: enough to find the record, no more.
_SHOWN_CHARS: Final = 200
# `redact_pans` masks quoted card numbers (JSON); keys and decoder errors show them bare or in
# single quotes (`Invalid enum value '4111…'`, `b'4111…'`), so any long digit run is masked too.
_DIGIT_RUN: Final = re.compile(r"\d{13,}")


def _redacted(raw: bytes | str) -> str:
    """Text derived from record bytes, made safe for a log line: card numbers masked, truncated."""
    data = raw if isinstance(raw, bytes) else raw.encode("utf-8", "backslashreplace")
    text = redact_pans(data).decode("utf-8", "backslashreplace")
    return _DIGIT_RUN.sub(lambda match: mask_pan(match[0]), text)[:_SHOWN_CHARS]


class CustomerTable(Mapping[str, CustomerStatus]):
    """A read-only mapping account → latest `CustomerStatus`, kept current by one thread."""

    def __init__(self, rows: dict[str, CustomerStatus] | None = None) -> None:
        self._rows: dict[str, CustomerStatus] = dict(rows or {})
        self.skipped: Counter[str] = Counter()  # records skipped, by reason
        self._applied_at = time.monotonic()

    def __getitem__(self, account: str) -> CustomerStatus:
        return self._rows[account]

    def get(self, account: str, default: CustomerStatus | None = None) -> CustomerStatus | None:  # type: ignore[override]
        return self._rows.get(account, default)

    def __iter__(self) -> Iterator[str]:
        return iter(self._rows)

    def __len__(self) -> int:
        return len(self._rows)

    @property
    def malformed(self) -> int:
        """How many records were skipped, whatever the reason."""
        return sum(self.skipped.values())

    @property
    def last_applied(self) -> float:
        """When the table last folded a record (or was created), as a Unix time in seconds."""
        return time.time() - self.age_seconds()

    def age_seconds(self) -> float:
        """Seconds since the table last folded a record; on a quiet topic this grows while the table is current."""
        return time.monotonic() - self._applied_at

    def apply(self, key: bytes | None, value: bytes | None, partition: int | None = None,
              offset: int | None = None) -> None:
        """Fold one `customer-status` record into the table; never raises.

        A record that cannot be used is counted, logged and skipped: raising here would stop
        the engine from starting (while loading) or freeze the table (in the follower).
        """
        try:
            skip = self._fold(key, value)
        except Exception as error:  # a decoder bug must not stop the table either
            skip = Malformed("undecodable", f"{type(error).__name__}: {error}")
        self._applied_at = time.monotonic()
        if skip is not None:
            self._skip(skip, key, partition, offset)

    def _fold(self, key: bytes | None, value: bytes | None) -> Malformed | None:
        """Apply the record, or return why it cannot be applied."""
        try:
            account = None if key is None else key.decode()
        except UnicodeDecodeError:  # no account is keyed by it: neither a row nor a tombstone can apply
            return Malformed("bad_key", "the record key is not UTF-8")
        row = decode_customer(key, value)
        if isinstance(row, Malformed):
            return row
        if row is not None:
            self._rows[row.account] = row
        elif account is None:
            return Malformed("no_key", "a tombstone without a key names no customer")
        else:
            self._rows.pop(account, None)
        return None

    def _skip(self, why: Malformed, key: bytes | None, partition: int | None, offset: int | None) -> None:
        self.skipped[why.reason] += 1
        logs.get("customers").warning(
            "customer-status record skipped", reason=why.reason, error=_redacted(why.error),
            key=None if key is None else _redacted(key), partition=partition, offset=offset,
        )


class GlobalCustomerTable(CustomerTable, FollowedTopic):
    """A `CustomerTable` loaded from Kafka to its end, then followed in a daemon thread (`FollowedTopic`)."""

    def __init__(self, settings: Settings) -> None:
        CustomerTable.__init__(self)
        FollowedTopic.__init__(self, settings, settings.topics.customers, "customer-table")

    def loaded(self, seconds: float) -> None:
        self._applied_at = time.monotonic()
        self._log.info("customer table loaded", customers=len(self), skipped=self.malformed,
                       seconds=round(seconds, 3))


def global_table(settings: Settings) -> GlobalCustomerTable:
    """The process's one table for these settings (shared by every task in the process)."""
    return shared(settings, settings.topics.customers, GlobalCustomerTable)
