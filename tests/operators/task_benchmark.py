"""Micro-benchmark of `TaskProcessor.process`: run `python -m tests.operators.task_benchmark [--profile] [--repeat N]`.

200,000 generated commands over 20,000 accounts, in batches of 2,000, through one task;
prints commands per second. Not a test (nothing is asserted); it is how the hot path is measured.
The machine may be shared: CPU time is measured, and `--repeat N` runs N fresh tasks over the
same records and reports the fastest (the least disturbed), next to the median.
"""

from __future__ import annotations

import random
import sys
import time

import msgspec

from operators.task import TaskProcessor
from paystream.records import InboundRecord
from paystream.settings import Settings, load
from paystream.wire import CustomerStatus

COUNTRIES = ("FR", "DE", "ES", "IT", "GB", "US", "JP", "NL")


def workload(commands: int, accounts: int, seed: int = 7) -> tuple[dict[str, CustomerStatus], list[InboundRecord]]:
    """Customers and a realistic mix of payments commands (all on partition 0 of a 1-partition topic)."""
    rng = random.Random(seed)
    names = [f"acct-{i:06d}" for i in range(accounts)]
    customers = {
        name: CustomerStatus(v=1, account=name, kyc="verified", blocked=False, single_limit=500_000,
                             daily_limit=5_000_000, home_country="FR", currency="EUR")
        for name in names
    }
    open_auths: dict[str, list[str]] = {}
    captured: dict[str, list[str]] = {}
    records = []
    ts = 1_700_000_000_000
    for n in range(commands):
        account = rng.choice(names)
        ts += rng.randint(0, 20)
        base = {"v": 1, "payment_id": f"p{n}", "account": account, "currency": "EUR", "ts": ts}
        roll = rng.random()
        if roll < 0.25 or account not in open_auths:
            body = {**base, "type": "deposit", "amount": rng.randint(1_000, 100_000)}
            open_auths.setdefault(account, [])
        elif roll < 0.55:
            body = {**base, "type": "authorize", "amount": rng.randint(100, 5_000),
                    "country": rng.choice(COUNTRIES), "merchant": "m1", "pan": "4111111111111111"}
            open_auths[account].append(f"p{n}")
        elif roll < 0.75 and open_auths[account]:
            auth = open_auths[account].pop()
            body = {**base, "type": "capture", "amount": 100, "auth_id": auth}
            captured.setdefault(account, []).append(auth)
        elif roll < 0.8 and open_auths[account]:
            body = {**base, "type": "void", "amount": 1, "auth_id": open_auths[account].pop()}
        elif roll < 0.85 and captured.get(account):
            body = {**base, "type": "refund", "amount": 50, "auth_id": captured[account].pop()}
        else:
            body = {**base, "type": "transfer", "amount": rng.randint(1, 500), "to_account": rng.choice(names)}
        records.append(InboundRecord("payments", 0, n, account.encode(), msgspec.json.encode(body)))
    return customers, records


def run_once(settings: Settings, customers: dict[str, CustomerStatus],
             batches: list[list[InboundRecord]]) -> tuple[float, TaskProcessor, int]:
    """One fresh task over every batch: (CPU seconds, the task, records written)."""
    processor = TaskProcessor(settings, customers, {})
    started = time.process_time()
    written = 0
    for batch in batches:
        written += len(processor.process(batch))
    return time.process_time() - started, processor, written


def main() -> None:
    settings: Settings = load(environ={}, kafka={"partitions": 1})
    customers, records = workload(200_000, 20_000)
    batches = [records[i : i + 2_000] for i in range(0, len(records), 2_000)]
    if "--profile" in sys.argv:
        import cProfile
        import pstats

        processor = TaskProcessor(settings, customers, {})
        profiler = cProfile.Profile(time.process_time)  # CPU time: the machine may be shared
        profiler.enable()
        for batch in batches:
            processor.process(batch)
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(18)
        return
    repeat = int(sys.argv[sys.argv.index("--repeat") + 1]) if "--repeat" in sys.argv else 1
    runs = [run_once(settings, customers, batches) for _ in range(repeat)]
    times = sorted(elapsed for elapsed, _, _ in runs)
    elapsed, processor, written = min(runs, key=lambda run: run[0])
    median = times[len(times) // 2]
    print(f"{len(records):,} commands in {elapsed:.2f}s of CPU time = {len(records) / elapsed:,.0f} commands/s "
          f"({elapsed / len(records) * 1e6:.2f} µs each; median of {repeat}: {median / len(records) * 1e6:.2f} µs), "
          f"{written:,} records out")
    print(sorted(processor.counts.items(), key=lambda item: -item[1])[:12])
    print("changelog bytes per account:",
          sum(len(msgspec.msgpack.encode(a)) for a in processor.accounts.values()) // len(processor.accounts))


if __name__ == "__main__":
    main()
