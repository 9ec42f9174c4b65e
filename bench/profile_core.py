"""Where the realistic flow's CPU goes: the payment domain core (`operators.task.TaskProcessor`)
over generated traffic, in memory (no Kafka, no Bytewax), with and without cProfile.

    python -m bench.profile_core [--payments 200000] [--accounts 20000] [--top 15]

Prints commands/s without the profiler, the state it left (bytes per account on the heap and in
the changelog's encoding), then the top functions by own time. bench/README.md keeps the
figures of the last run that was published.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import time
import tracemalloc

from operators.accounts import AccountState, encode_account
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


def run(table: CustomerTable, payments: list[InboundRecord], batch: int = 5_000,
        accounts: dict[str, AccountState] | None = None) -> float:
    """Seconds to process `payments` in batches on `accounts` (fresh ones if not given)."""
    accounts = {} if accounts is None else accounts
    processor = TaskProcessor(load(environ={}, kafka={"partitions": 1}), table, accounts)
    started = time.perf_counter()
    for start in range(0, len(payments), batch):
        processor.process(payments[start:start + batch])
    return time.perf_counter() - started


def state_bytes(table: CustomerTable, payments: list[InboundRecord]) -> tuple[int, float, float]:
    """(accounts, heap bytes per account, changelog bytes per account) after processing `payments`.

    The heap figure is what Python allocated for the accounts (tracemalloc: the objects, not the
    allocator's slack), the changelog figure the encoded record (what a restore reads).
    """
    accounts: dict[str, AccountState] = {}
    tracemalloc.start()
    before, _ = tracemalloc.get_traced_memory()
    run(table, payments, accounts=accounts)
    heap = tracemalloc.get_traced_memory()[0] - before  # the accounts: the batches' outputs are gone
    tracemalloc.stop()
    encoded = sum(len(encode_account(account)) for account in accounts.values())
    return len(accounts), heap / max(len(accounts), 1), encoded / max(len(accounts), 1)


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
    count, heap, encoded = state_bytes(table, payments)
    print(f"state: {count:,} accounts, {heap:,.0f} bytes each on the heap, {encoded:,.0f} bytes each encoded "
          f"(changelog); {len(payments) / max(count, 1):.1f} commands per account")
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
