"""`paystream bench`: paystream and its peers side by side on the same broker (see bench/harness.py)."""

from __future__ import annotations

import argparse

QUICK = {"payments": 100_000, "accounts": 10_000, "latency_s": 10.0}
FULL = {"payments": 1_000_000, "accounts": 100_000, "latency_s": 30.0}
DEFAULT_SYSTEMS = ("paystream,paystream-2p,paystream-full,paystream-disk,paystream-full-disk,raw-eos,raw-alo,"
                   "kstreams-1,kstreams-2,quix,bytewax")
RECOVERY_ACCOUNTS = 1_000_000


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench", help="compare paystream with a raw loop, Kafka Streams, Quix Streams and Bytewax",
        description="Runs each system one at a time on the broker at kafka.bootstrap_servers over the same "
                    "simple payment workload; prints a table and writes bench/results/latest.json and latest.png.")
    parser.add_argument("--quick", action="store_true", help="100,000 payments over 10,000 accounts, 10 s latency runs")
    parser.add_argument("--payments", type=int, help="inputs per throughput run (default 1,000,000)")
    parser.add_argument("--accounts", type=int, help="distinct accounts (default 100,000)")
    parser.add_argument("--systems", default=DEFAULT_SYSTEMS, help=f"comma-separated, from: {DEFAULT_SYSTEMS}")
    parser.add_argument("--commit-ms", default="1000", help="commit interval(s) in ms, e.g. 1000 or 1000,100")
    parser.add_argument("--latency-seconds", type=float, help="length of each latency run; 0 skips them")
    parser.add_argument("--recovery-accounts", type=int, default=RECOVERY_ACCOUNTS,
                        help="accounts of state for paystream's kill -9 recovery and restore figures "
                             f"(default {RECOVERY_ACCOUNTS:,}, also with --quick); 0 skips them")
    parser.set_defaults(func=handler)


def handler(args: argparse.Namespace) -> int:
    from bench.harness import BenchPlan, run_bench
    from bench.report import plot, table, write_json

    size = QUICK if args.quick else FULL
    plan = BenchPlan(
        payments=args.payments or size["payments"],
        accounts=args.accounts or size["accounts"],
        systems=[name.strip() for name in args.systems.split(",") if name.strip()],
        commit_ms=[int(ms) for ms in args.commit_ms.split(",")],
        latency_s=size["latency_s"] if args.latency_seconds is None else args.latency_seconds,
        recovery_accounts=args.recovery_accounts,
    )
    results = run_bench(args.settings, plan, say=lambda line: print(line, flush=True))
    print()
    print(table(results))
    path = write_json(results)
    picture = plot(results)
    print(f"\nwrote {path}, {path.parent / 'latest.json'} and {picture}")
    failed = [row["system"] for row in results["systems"] if row["status"].startswith("failed")]
    recovery = results.get("recovery") or {}
    return 1 if failed or str(recovery.get("status", "")).startswith("failed") else 0
