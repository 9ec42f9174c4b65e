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
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Final

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from paystream import clients, logs
from paystream.settings import Settings
from paystream.wire import CustomerStatus, Malformed, decode_customer, mask_pan, redact_pans

# How much of a key or decoder error a warning shows: enough to find the record, no more.
_SHOWN_CHARS: Final = 200
# `redact_pans` masks quoted card numbers (JSON); keys and decoder errors show them bare or in
# single quotes (`Invalid enum value '4111…'`, `b'4111…'`), so any long digit run is masked too.
_DIGIT_RUN: Final = re.compile(r"\d{13,}")
# After a consumer error raised by `consume`, wait before retrying instead of spinning on it.
_ERROR_BACKOFF_S: Final = 1.0


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


class GlobalCustomerTable(CustomerTable):
    """A `CustomerTable` loaded from Kafka to its end, then followed in a daemon thread."""

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self._settings = settings
        self._log = logs.get("customers")
        self._failure: BaseException | None = None
        self._closing = threading.Event()
        self._consumer = Consumer(
            clients.consumer_config(settings, f"{settings.engine.app_id}-customers-{uuid.uuid4().hex[:8]}",
                                    **{"enable.partition.eof": True})
        )
        topic = settings.topics.customers
        metadata = self._consumer.list_topics(topic, timeout=30).topics[topic]
        if metadata.error is not None:
            raise RuntimeError(f"cannot read {topic}: {metadata.error}")
        partitions = [TopicPartition(topic, p, -2) for p in metadata.partitions]  # -2: beginning
        self._consumer.assign(partitions)
        self._load_to_end(len(partitions))
        self._thread = threading.Thread(target=self._run_follower, name="customer-table", daemon=True)
        self._thread.start()

    def check(self) -> None:
        """Raise if the follower thread stopped: the table is frozen, so nothing may be decided on it.

        Call it before each batch of decisions; the raise stops the worker, and its restart
        loads the table afresh.
        """
        if self._thread.is_alive():
            return
        cause = self._failure
        if cause is None:
            why = "the table was closed" if self._closing.is_set() else "the thread ended"
            raise RuntimeError(f"customer table follower stopped: {why}")
        raise RuntimeError(f"customer table follower stopped: {cause!r}") from cause

    def follower_alive(self) -> bool:
        """Whether the follower thread still runs (`check()` raises when it does not)."""
        return self._thread.is_alive()

    def close(self, timeout: float = 10.0) -> None:
        """Stop following and close the consumer (orderly shutdown, tests); `check()` then raises."""
        self._closing.set()
        self._thread.join(timeout)

    def _load_to_end(self, partitions: int) -> None:
        started = time.perf_counter()
        at_end: set[int | None] = set()  # `Message.partition()` is typed Optional
        while len(at_end) < partitions:
            for message in self._consumer.consume(10_000, timeout=0.05):
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        at_end.add(message.partition())
                        continue
                    raise RuntimeError(f"reading customer-status: {error}")
                self.apply(message.key(), message.value(), message.partition(), message.offset())
        self._applied_at = time.monotonic()
        self._log.info("customer table loaded", customers=len(self), skipped=self.malformed,
                       seconds=round(time.perf_counter() - started, 3))

    def _consume(self, timeout: float) -> list[Message]:
        """One fetch for the follower (the seam where tests inject consumer errors)."""
        return self._consumer.consume(1_000, timeout=timeout)

    def _run_follower(self) -> None:
        """The follower thread's body: whatever ends it is kept for `check()` and logged, never lost."""
        try:
            self._follow()
        except BaseException as error:
            self._failure = error
            self._log.error("customer table follower stopped", error=repr(error), exc_info=True)
        finally:
            try:
                self._consumer.close()
            except Exception as error:  # already closed or broken: the follower is over either way
                self._log.warning("customer table consumer close failed", error=repr(error))

    def _follow(self) -> None:
        while not self._closing.is_set():
            try:
                messages = self._consume(1.0)
            except KafkaException as error:
                self._on_consume_error(error)
                self._closing.wait(_ERROR_BACKOFF_S)
                continue
            for message in messages:
                failure = message.error()
                if failure is None:
                    self.apply(message.key(), message.value(), message.partition(), message.offset())
                elif failure.code() != KafkaError._PARTITION_EOF:
                    self._on_consume_error(KafkaException(failure))

    def _on_consume_error(self, error: KafkaException) -> None:
        """Log a consumer error and go on (librdkafka retries); re-raise a fatal one, which ends the follower.

        An error that is not a `KafkaError` cannot be classified, so it counts as fatal: a
        stopped worker is loud, a follower looping on an unknown failure is not.
        """
        cause = error.args[0] if error.args else None
        if not isinstance(cause, KafkaError) or cause.fatal():
            raise error
        self._log.warning("customer-status consume error", code=cause.name(), error=cause.str())


_tables: dict[str, GlobalCustomerTable] = {}
_lock = threading.Lock()


def global_table(settings: Settings) -> GlobalCustomerTable:
    """The process's one table for these settings (shared by every task in the process)."""
    key = f"{settings.kafka.bootstrap_servers}/{settings.topics.customers}"
    with _lock:
        if key not in _tables:
            _tables[key] = GlobalCustomerTable(settings)
        return _tables[key]
