"""`paystream capacity`: processes, partitions, memory and restore time for a target load (tools/capacity.py)."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from tools.capacity import RESULTS

    parser = subparsers.add_parser(
        "capacity", help="project processes, partitions and memory for a load from a benchmark run",
        description="Scales the per-process figures of a `paystream bench` run (docs/CAPACITY.md).")
    parser.add_argument("--results", default=str(RESULTS), help="a bench results file (default: the latest run)")
    parser.add_argument("--accounts", type=int, default=10_000_000)
    parser.add_argument("--rates", default="100000,1000000", help="commands per second, comma-separated")
    parser.add_argument("--memory-limit-mib", type=float, default=4_096, help="a pod's memory limit")
    parser.set_defaults(func=handler)


def handler(args: argparse.Namespace) -> int:
    from tools.capacity import main

    return main(["--results", args.results, "--accounts", str(args.accounts), "--rates", args.rates,
                 "--memory-limit-mib", str(args.memory_limit_mib)])
