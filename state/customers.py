"""The `customer-status` table, joined as a global table (like Kafka Streams' `GlobalKTable`).

Every process holds all customers: at start the whole compacted topic is read to its end
before any payment is processed (so decisions see the reference data that preceded them),
then a background thread keeps following it. The latest value wins; a tombstone removes the
customer. Malformed rows are logged and counted, and skipped: the record stays in the topic.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Iterator, Mapping

from confluent_kafka import Consumer, KafkaError, TopicPartition

from paystream import clients, logs
from paystream.settings import Settings
from paystream.wire import CustomerStatus, Malformed, decode_customer


class CustomerTable(Mapping[str, CustomerStatus]):
    """A read-only mapping account → latest `CustomerStatus`, kept current by one thread."""

    def __init__(self, rows: dict[str, CustomerStatus] | None = None) -> None:
        self._rows: dict[str, CustomerStatus] = dict(rows or {})
        self.malformed = 0

    def __getitem__(self, account: str) -> CustomerStatus:
        return self._rows[account]

    def get(self, account: str, default: CustomerStatus | None = None) -> CustomerStatus | None:  # type: ignore[override]
        return self._rows.get(account, default)

    def __iter__(self) -> Iterator[str]:
        return iter(self._rows)

    def __len__(self) -> int:
        return len(self._rows)

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """Fold one `customer-status` record into the table."""
        row = decode_customer(key, value)
        if row is None:
            if key is not None:
                self._rows.pop(key.decode(), None)
        elif isinstance(row, Malformed):
            self.malformed += 1
            logs.get("customers").warning("malformed customer-status record skipped", reason=row.reason, error=row.error)
        else:
            self._rows[row.account] = row


class GlobalCustomerTable(CustomerTable):
    """A `CustomerTable` loaded from Kafka to its end, then followed in a daemon thread."""

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self._settings = settings
        self._log = logs.get("customers")
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
        self._thread = threading.Thread(target=self._follow, name="customer-table", daemon=True)
        self._thread.start()

    def _load_to_end(self, partitions: int) -> None:
        started = time.perf_counter()
        at_end: set[int] = set()
        while len(at_end) < partitions:
            for message in self._consumer.consume(10_000, timeout=0.05):
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        at_end.add(message.partition())
                        continue
                    raise RuntimeError(f"reading customer-status: {error}")
                self.apply(message.key(), message.value())
        self._log.info("customer table loaded", customers=len(self), seconds=round(time.perf_counter() - started, 3))

    def _follow(self) -> None:
        while True:
            for message in self._consumer.consume(1_000, timeout=1.0):
                if message.error() is None:
                    self.apply(message.key(), message.value())


_tables: dict[str, GlobalCustomerTable] = {}
_lock = threading.Lock()


def global_table(settings: Settings) -> GlobalCustomerTable:
    """The process's one table for these settings (shared by every task in the process)."""
    key = f"{settings.kafka.bootstrap_servers}/{settings.topics.customers}"
    with _lock:
        if key not in _tables:
            _tables[key] = GlobalCustomerTable(settings)
        return _tables[key]
