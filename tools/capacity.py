"""A capacity model: processes, partitions, memory and restore time for a target load, from
figures measured by `paystream bench` (docs/CAPACITY.md explains each assumption).

    paystream capacity [--results bench/results/latest.json] [--accounts 10000000] [--rates 100000,1000000]

Inputs, all measured on one machine in one benchmark run:
- `per_core`: the realistic flow's commands per CPU-second, steady (one process, one core).
- `scaling`: two processes' records per CPU-second over one process's (the simple variant).
- `bytes_per_account`: the realistic flow's RSS above the one-rule flow's, per account (both
  runs hold the same accounts; the one-rule flow keeps one integer per account).
- `base_mib`: the one-rule flow's RSS: the engine, its clients and buffers, its small state.
- `restore_keys_per_s`: a full changelog restore, keys per second per process.

>>> model = Inputs(per_core=30_000, scaling=0.8, bytes_per_account=7_000, base_mib=150,
...                restore_keys_per_s=350_000, source="example")
>>> plan = model.plan(accounts=10_000_000, rate=100_000)
>>> plan.processes, plan.partitions, round(plan.memory_mib_per_process)
(6, 24, 11276)
>>> plan.processes_for_memory(4_096)  # pods of 4 GiB: memory, not CPU, sets the count
17
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent.parent / "bench" / "results" / "latest.json"
HEADROOM = 0.7  # plan each process at 70% of its measured rate: peaks, rebalances, a lost process
TASKS_PER_PROCESS = 4  # partitions per process: room to rescale up by 4x without repartitioning
MIB = 2**20


@dataclass(frozen=True)
class Plan:
    """What `Inputs.plan` projects for one load."""

    accounts: int
    rate: float
    processes: int
    partitions: int
    memory_mib_per_process: float
    restore_s: float
    bytes_per_account: float
    base_mib: float

    def processes_for_memory(self, limit_mib: float) -> int:
        """Processes needed so each stays under `limit_mib` of RSS (state spread evenly)."""
        room = limit_mib - self.base_mib
        if room <= 0:
            raise ValueError(f"{limit_mib} MiB is below an empty process's {self.base_mib:.0f} MiB")
        return max(1, math.ceil(self.accounts * self.bytes_per_account / MIB / room))


@dataclass(frozen=True)
class Inputs:
    """The measured per-process figures the model scales."""

    per_core: float
    scaling: float
    bytes_per_account: float
    base_mib: float
    restore_keys_per_s: float
    source: str

    def plan(self, accounts: int, rate: float) -> Plan:
        """Processes (one core each) to decide `rate` commands/s with `HEADROOM`, and what each holds."""
        per_process = self.per_core * min(self.scaling, 1.0) * HEADROOM
        processes = max(1, math.ceil(rate / per_process))
        share = accounts / processes
        return Plan(accounts=accounts, rate=rate, processes=processes, partitions=processes * TASKS_PER_PROCESS,
                    memory_mib_per_process=self.base_mib + share * self.bytes_per_account / MIB,
                    restore_s=share / self.restore_keys_per_s, bytes_per_account=self.bytes_per_account,
                    base_mib=self.base_mib)


def inputs_from(results: dict[str, Any]) -> Inputs:
    """The model's inputs from a `paystream bench` results file (a full run: 1,000,000 payments)."""
    rows = {row["system"]: row for row in results["systems"] if str(row.get("status", "")).startswith("ok")}
    missing = {"paystream", "paystream-2p", "paystream-full"} - rows.keys()
    if missing:
        raise ValueError(f"the results lack the rows {sorted(missing)}: run `paystream bench` with them")
    full, one, two = rows["paystream-full"], rows["paystream"], rows["paystream-2p"]
    per_core = full.get("steady_items_per_cpu_s") or full["items_per_cpu_s"]
    scaling = ((two.get("steady_items_per_cpu_s") or two["items_per_cpu_s"])
               / (one.get("steady_items_per_cpu_s") or one["items_per_cpu_s"]))
    base = one["peak_rss_mib"]
    accounts = results["accounts"]
    bytes_per_account = max(full["peak_rss_mib"] - base, 0) * MIB / accounts
    cases = [case for case in (results.get("recovery") or {}).get("cases", []) if not case.get("with_snapshot")]
    restore = cases[0]["restore_keys_per_s"] if cases else float("nan")
    return Inputs(per_core=per_core, scaling=scaling, bytes_per_account=bytes_per_account, base_mib=base,
                  restore_keys_per_s=restore, source=f"run {results['run_id']} ({results['payments']:,} payments, "
                                                     f"{accounts:,} accounts)")


def table(inputs: Inputs, accounts: int, rates: list[float], memory_limit_mib: float) -> str:
    """The projection as a text table."""
    lines = [f"measured ({inputs.source}): {inputs.per_core:,.0f} commands per CPU-second, 2-process scaling "
             f"{inputs.scaling:.0%}, {inputs.bytes_per_account:,.0f} bytes of RSS per account, the engine without "
             f"it {inputs.base_mib:,.0f} MiB, restore {inputs.restore_keys_per_s:,.0f} keys/s",
             f"planned at {HEADROOM:.0%} of the measured rate, {TASKS_PER_PROCESS} partitions per process", "",
             f"{'accounts':>12} {'commands/s':>11} {'processes':>9} {'partitions':>10} {'MiB/process':>11} "
             f"{'restore s':>9} {f'processes for {memory_limit_mib:,.0f} MiB':>24}"]
    for rate in rates:
        plan = inputs.plan(accounts, rate)
        lines.append(f"{accounts:>12,} {rate:>11,.0f} {plan.processes:>9,} {plan.partitions:>10,} "
                     f"{plan.memory_mib_per_process:>11,.0f} {plan.restore_s:>9,.1f} "
                     f"{max(plan.processes, plan.processes_for_memory(memory_limit_mib)):>24,}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.capacity", description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--accounts", type=int, default=10_000_000)
    parser.add_argument("--rates", default="100000,1000000", help="commands per second, comma-separated")
    parser.add_argument("--memory-limit-mib", type=float, default=4_096, help="a pod's memory limit")
    args = parser.parse_args(argv)
    inputs = inputs_from(json.loads(args.results.read_text()))
    print(table(inputs, args.accounts, [float(rate) for rate in args.rates.split(",")], args.memory_limit_mib))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
