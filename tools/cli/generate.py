"""`paystream generate`: write deterministic synthetic traffic to Kafka (or to a JSONL file).

The customer table goes first and is fully delivered before the first payment command, so an
engine that starts reading both topics finds every customer row it will need. Records are
produced with paystream's one producer configuration (idempotent, `acks=all`, Java's murmur2
partitioner), so a key lands on `murmur2(key) % partitions` like any Java producer would put it.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from paystream.settings import Settings
    from tools.traffic import Summary, TimedRecord

POLL_EVERY = 1_000  # serve delivery callbacks every this many records; never flush per record
FLUSH_TIMEOUT_S = 120.0


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "generate", help="produce deterministic customers and payment commands (or write them to a file)",
        description="Produce the customer-status table, then payment commands of the wire contract with "
                    "every rule scenario and a --bad-ratio share of malformed records, to the topics of the "
                    "settings. The same --seed always gives the same bytes.")
    parser.add_argument("--accounts", type=int, default=10_000, help="accounts (default 10,000)")
    parser.add_argument("--payments", type=int, default=100_000, help="records on the payments topic (default 100,000)")
    parser.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    parser.add_argument("--bad-ratio", type=float, default=0.01,
                        help="share of malformed payments records (default 0.01)")
    parser.add_argument("--start-ts", type=int, default=None,
                        help="event time of the first command, epoch ms (default 2026-01-01T00:00Z)")
    parser.add_argument("--simple", action="store_true",
                        help="the benchmark's simple workload instead: only payments, type `payment`, "
                             "not the wire contract")
    parser.add_argument("--out", metavar="FILE.jsonl",
                        help='write {"topic", "key", "value"} lines to FILE instead of Kafka '
                             "(for `paystream model --input`)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=handler, needs_kafka=True)


def handler(args: argparse.Namespace) -> int:
    from confluent_kafka import KafkaException

    if args.accounts < 2 or args.payments < 0 or not 0.0 <= args.bad_ratio <= 1.0:
        print("paystream: need --accounts >= 2, --payments >= 0 and 0 <= --bad-ratio <= 1", file=sys.stderr)
        return 2
    options = {"accounts": args.accounts, "payments": args.payments, "seed": args.seed,
               "bad_ratio": args.bad_ratio, "progress": not args.no_progress, "simple": args.simple}
    if args.start_ts is not None:
        options["start_ts"] = args.start_ts
    try:
        if args.out:
            summary = write_traffic(args.out, **options)
            where = args.out
        else:
            summary = produce_traffic(args.settings, **options)
            where = (f"{args.settings.kafka.bootstrap_servers} "
                     f"({args.settings.topics.customers}, {args.settings.topics.payments})")
    except KafkaException as error:
        print(f"paystream: {error}", file=sys.stderr)
        return 1
    print(summary_table(summary))
    total = sum(summary.records.values())
    print(f"{total:,} records to {where} in {summary.seconds:.1f}s "
          f"({total / max(summary.seconds, 1e-9):,.0f} records/s)")
    if summary.delivery_errors:
        print(f"paystream: {sum(summary.delivery_errors.values())} records were not delivered", file=sys.stderr)
        return 1
    return 0


def _records(accounts: int, payments: int, seed: int, bad_ratio: float, simple: bool,
             start_ts: int | None) -> tuple[Iterable[TimedRecord], Summary]:
    """The records with the Kafka timestamp to give each (-1: the producer's clock)."""
    from tools.traffic import DEFAULT_START_TS, Summary, Traffic, simple_payments

    start = DEFAULT_START_TS if start_ts is None else start_ts
    if not simple:
        traffic = Traffic(accounts, payments, seed, bad_ratio, start)
        return traffic.timed(), traffic.summary
    summary = Summary()

    def counted() -> Iterator[TimedRecord]:
        for kind, key, value in simple_payments(accounts, payments, seed, start):
            summary.records["payments"] += 1
            summary.commands["payment (simple)"] += 1
            yield kind, key, value, -1

    return counted(), summary


def produce_traffic(settings: Settings, accounts: int = 10_000, payments: int = 100_000, seed: int = 42,
                    bad_ratio: float = 0.01, progress: bool = True, simple: bool = False,
                    start_ts: int | None = None) -> Summary:
    """Produce the traffic to `settings.topics.customers` then `settings.topics.payments`.

    Customers are flushed (fully acknowledged) before the first payment. Delivery errors are
    counted in `summary.delivery_errors` by error name, never raised; records still queued when
    the final flush times out count as `not_flushed`.
    """
    from confluent_kafka import Producer
    from tqdm import tqdm

    from paystream.clients import producer_config
    from tools.traffic import recent_start_ts

    if start_ts is None and not simple:
        # event time ends now, and each record's Kafka timestamp is its event time: recent
        # traffic for the brokers' retention and for the engine's event-time bounds
        start_ts = recent_start_ts(payments, int(time.time() * 1000))
    records, summary = _records(accounts, payments, seed, bad_ratio, simple, start_ts)
    topics = {"customers": settings.topics.customers, "payments": settings.topics.payments}
    producer = Producer(producer_config(settings))

    def on_delivery(error: Any, _message: Any) -> None:
        if error is None:
            summary.delivered += 1
        else:
            summary.delivery_errors[error.name()] += 1

    def flush() -> None:
        left = producer.flush(FLUSH_TIMEOUT_S)
        if left:
            summary.delivery_errors["not_flushed"] += left

    started = time.perf_counter()
    # the customer table is O(accounts): materialise it so the bar knows the exact total
    stream = iter(records)
    customers: list[TimedRecord] = []
    first_payment: list[TimedRecord] = []
    for record in stream:
        (customers if record[0] == "customers" else first_payment).append(record)
        if first_payment:
            break
    bar = tqdm(total=len(customers) + payments, unit="rec", unit_scale=True, file=sys.stderr,
               disable=not progress, desc="customers" if customers else "payments")
    try:
        _produce(producer, customers, topics, on_delivery, bar)
        if customers:
            flush()  # the whole table is in Kafka before any command that needs it
            bar.set_description("payments")
        _produce(producer, _chain(first_payment, stream), topics, on_delivery, bar)
        flush()
    finally:
        bar.close()
    summary.seconds = time.perf_counter() - started
    return summary


def _chain(head: list[TimedRecord], tail: Iterator[TimedRecord]) -> Iterator[TimedRecord]:
    yield from head
    yield from tail


def _produce(producer: Any, records: Iterable[TimedRecord], topics: dict[str, str], on_delivery: Any, bar: Any) -> None:
    """Queue every record; poll for delivery reports every `POLL_EVERY` records, wait when the queue is full."""
    produce, poll = producer.produce, producer.poll
    pending = 0
    for kind, key, value, timestamp in records:
        while True:
            try:
                if timestamp < 0:
                    produce(topics[kind], value, key, on_delivery=on_delivery)
                else:
                    produce(topics[kind], value, key, on_delivery=on_delivery, timestamp=timestamp)
                break
            except BufferError:  # the local queue is full: let librdkafka send some
                poll(0.05)
        pending += 1
        if pending == POLL_EVERY:
            poll(0)
            bar.update(pending)
            pending = 0
    poll(0)
    bar.update(pending)


def write_traffic(path: str, accounts: int = 10_000, payments: int = 100_000, seed: int = 42,
                  bad_ratio: float = 0.01, progress: bool = True, simple: bool = False,
                  start_ts: int | None = None) -> Summary:
    """Write the traffic as JSON lines `{"topic": kind, "key": str|null, "value": str|null}`.

    Keys and values are UTF-8 text; the few deliberately non-UTF-8 `not_json` values are written
    with U+FFFD replacements (they stay `not_json`).
    """
    import msgspec
    from tqdm import tqdm

    records, summary = _records(accounts, payments, seed, bad_ratio, simple, start_ts)
    encode = msgspec.json.Encoder().encode
    started = time.perf_counter()
    with open(path, "wb") as out, tqdm(unit="rec", unit_scale=True, file=sys.stderr, disable=not progress) as bar:
        for count, (kind, key, value, timestamp) in enumerate(records, 1):
            line: dict[str, object] = {
                "topic": kind,
                "key": None if key is None else key.decode("utf-8", "replace"),
                "value": None if value is None else value.decode("utf-8", "replace"),
            }
            if timestamp >= 0:
                line["timestamp"] = timestamp
            out.write(encode(line) + b"\n")
            if count % POLL_EVERY == 0:
                bar.update(POLL_EVERY)
        bar.update(sum(summary.records.values()) % POLL_EVERY)
    summary.delivered = sum(summary.records.values())
    summary.seconds = time.perf_counter() - started
    return summary


def summary_table(summary: Summary) -> str:
    """A plain-text table of what was generated: counts per group and name."""
    rows = [("group", "name", "count")] + [(group, name, f"{count:,}") for group, name, count in summary.rows()]
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    return "\n".join(f"{group:<{widths[0]}}  {name:<{widths[1]}}  {count:>10}" for group, name, count in rows)
