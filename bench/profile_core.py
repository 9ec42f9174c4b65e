"""Where the realistic flow's CPU goes: the payment domain core (`operators.task.TaskProcessor`)
over generated traffic, in memory (no Kafka, no Bytewax), with and without cProfile.

    python -m bench.profile_core [--payments 200000] [--accounts 20000] [--top 15]

Prints commands/s without the profiler, then the top functions by own time. bench/README.md
keeps the figures of the last run that was published.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import time

from operators.accounts import AccountState
from operators.task import TaskProcessor
from paystream.records import InboundRecord
from paystream.settings import load
from state.customers import CustomerTable
from tools.traffic import Traffic


def records(accounts: int, payments: int) -> tuple[CustomerTable, list[InboundRecord]]:
    """The generator's customers as a table and its payments as one partition's records."""
    table = CustomerTable()
    out: list[InboundRecord] = []
    for kind, key, value, ts in Traffic(accounts, payments, seed=3, bad_ratio=0.01,
                                        start_ts=1_790_000_000_000).timed():
        if kind == "customers":
            table.apply(key, value)
        else:
            out.append(InboundRecord("payments", 0, len(out), key, value, ts if ts >= 0 else None))
    return table, out


def run(table: CustomerTable, payments: list[InboundRecord], batch: int = 5_000) -> float:
    """Seconds to process `payments` in batches on fresh accounts."""
    accounts: dict[str, AccountState] = {}
    processor = TaskProcessor(load(environ={}, kafka={"partitions": 1}), table, accounts)
    started = time.perf_counter()
    for start in range(0, len(payments), batch):
        processor.process(payments[start:start + batch])
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_core", description=__doc__.splitlines()[0])
    parser.add_argument("--payments", type=int, default=200_000)
    parser.add_argument("--accounts", type=int, default=20_000)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args(argv)
    table, payments = records(args.accounts, args.payments)
    plain = run(table, payments)
    print(f"{len(payments):,} commands in {plain:.2f} s: {len(payments) / plain:,.0f} commands/s, "
          f"{1e6 * plain / len(payments):.1f} µs each (one core, no Kafka)")
    profile = cProfile.Profile()
    profile.enable()
    run(table, payments)
    profile.disable()
    text = io.StringIO()
    pstats.Stats(profile, stream=text).sort_stats("tottime").print_stats(args.top)
    print(text.getvalue())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
