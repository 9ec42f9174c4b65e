"""Test support: inputs as topic records, and the output topics a correct engine would write
(computed by the reference model), so tests can break them on purpose."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

import msgspec

from paystream.settings import Settings, load
from verify.audit import Snapshot
from verify.geo import distance_km
from verify.model import ModelOutputs, run_input_order
from verify.render import output_records, partition_of
from verify.validation import InputRecord, customer_table

PARTITIONS = 4
SETTINGS = load(environ={})


def customer(account: str, *, kyc: str = "verified", blocked: bool = False, single_limit: int = 100_000,
             daily_limit: int = 500_000, home_country: str = "DE", currency: str = "EUR") -> bytes:
    return msgspec.json.encode({"v": 1, "account": account, "kyc": kyc, "blocked": blocked,
                                "single_limit": single_limit, "daily_limit": daily_limit,
                                "home_country": home_country, "currency": currency})


def command(kind: str, payment_id: str, account: str, amount: int, ts: int, currency: str = "EUR",
            **extra: Any) -> bytes:
    return msgspec.json.encode({"v": 1, "type": kind, "payment_id": payment_id, "account": account,
                                "amount": amount, "currency": currency, "ts": ts, **extra})


def input_records(customers: Iterable[tuple[bytes | None, bytes | None]],
                  payments: Iterable[tuple[bytes | None, bytes | None]],
                  settings: Settings = SETTINGS,
                  partitions: int = PARTITIONS) -> tuple[list[InputRecord], list[InputRecord]]:
    """Customer and payments records placed as Kafka's default partitioner would place them."""
    customer_records = [InputRecord(settings.topics.customers, 0, n, k, v) for n, (k, v) in enumerate(customers)]
    offsets: Counter[int] = Counter()
    payment_records = []
    for key, value in payments:
        partition = partition_of(key, partitions)
        payment_records.append(InputRecord(settings.topics.payments, partition, offsets[partition], key, value))
        offsets[partition] += 1
    payment_records.sort(key=lambda r: (r.partition, r.offset))
    return customer_records, payment_records


def correct_snapshot(customers: list[InputRecord], payments: list[InputRecord], settings: Settings = SETTINGS,
                     partitions: int = PARTITIONS) -> tuple[Snapshot, ModelOutputs]:
    """The inputs with the outputs a correct engine writes, each topic in (partition, offset) order."""
    outputs = run_input_order(payments, customer_table([(r.key, r.value) for r in customers]), settings.rules,
                              distance_km, partitions)
    return snapshot_of(customers, payments, outputs, settings, partitions), outputs


def snapshot_of(customers: list[InputRecord], payments: list[InputRecord], outputs: ModelOutputs,
                settings: Settings = SETTINGS, partitions: int = PARTITIONS) -> Snapshot:
    """The inputs with `outputs` written to the output topics as an engine would write them."""
    topics: dict[str, list[InputRecord]] = {}
    for topic, records in output_records(outputs, settings.topics).items():
        offsets: Counter[int] = Counter()
        placed = []
        for key, value, headers in records:
            partition = partition_of(key, partitions)
            placed.append(InputRecord(topic, partition, offsets[partition], key, value, tuple(headers)))
            offsets[partition] += 1
        topics[topic] = sorted(placed, key=lambda r: (r.partition, r.offset))
    t = settings.topics
    snapshot = Snapshot(customers=customers, payments=payments, payment_partitions=partitions,
                        decisions=topics[t.decisions], ledger=topics[t.ledger], balances=topics[t.balances],
                        alerts=topics[t.alerts], completed=topics[t.completed], dlq=topics[t.dlq])
    return snapshot
