"""Chaos runs on the real broker: random `kill -9`s of the workers, then the independent audit.

Each run uses fresh topics and app id (`make_settings`), generated traffic with 1% malformed
records, the commit-path fault points armed in the workers, and `verify`'s auditor at the end.
Short waits between kills and enough payments make the kills land all over the run: the engine
is fast (a few thousand payments per second here), and each restart commits at least one
epoch (1 s) of work before the next kill, so 50,000 payments would be done after a few kills.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from paystream.chaos import ChaosPlan, ChaosResult, ChaosRun

pytestmark = [pytest.mark.chaos]


def run_chaos(settings: Any, plan: ChaosPlan, tmp_path: Path) -> ChaosResult:
    result = ChaosRun(settings, plan, tmp_path / "logs", say=lambda line: print(line, flush=True)).run()
    print(result.verify_table)
    print(json.dumps({k: v for k, v in result.report.items() if k not in ("verify", "incidents")}, indent=1))
    return result


@pytest.mark.timeout(480)
def test_twenty_random_worker_kills_over_fifty_thousand_payments_lose_and_duplicate_nothing(
        make_settings: Any, tmp_path: Path) -> None:
    # a small read-ahead makes each restart commit little before the next kill, so the kills
    # land while work remains however fast the engine has become
    settings = make_settings(partitions=4, engine={"max_in_flight": 1_000})
    plan = ChaosPlan(kills=20, payments=400_000, accounts=5_000, seed=11, wait_s=(0.05, 0.6))

    result = run_chaos(settings, plan, tmp_path)

    report = result.report
    assert result.ok, result.verify_table
    assert report["kills"] == 20
    assert report["restarts"] == report["kills"] + report["fault_point_deaths"] + report["other_worker_exits"]
    counts = report["verify"]["counts"]
    assert counts["payments"] == 400_000
    assert counts["decisions"] == counts["commands"] - counts["duplicates"]  # every command decided once
    # the kills were spread over the run, not all fired at an engine that had already finished
    measured = [seconds for seconds in report["recovery_s"] if seconds is not None]
    assert len(measured) >= 10, report["recovery_s"]
    assert report["recovery_max_s"] < plan.recovery_timeout_s


@pytest.mark.timeout(300)
def test_the_broken_build_with_offsets_committed_outside_the_transaction_loses_decisions(
        make_settings: Any, tmp_path: Path) -> None:
    """The chaos run must be able to fail: offsets committed by the consumer before the
    transaction, and a `kill -9` between the two, lose the decisions of that epoch."""
    # 12 tasks each commit their first epoch of payments: the chance that none of them dies
    # inside its commit is 0.5 ** 12
    settings = make_settings(partitions=12, engine={"unsafe_offsets_outside_transaction": True})
    plan = ChaosPlan(kills=2, payments=60_000, accounts=2_000, seed=5, wait_s=(0.05, 0.3),
                     fault_chances={"mid_commit": 0.5})

    result = run_chaos(settings, plan, tmp_path)

    assert result.report["fault_point_deaths"] >= 1
    assert result.report["fault_point_deaths_by_point"]["mid_commit"] >= 1
    assert not result.ok
    assert "1_one_decision" in result.violated
    assert result.report["verify"]["invariants"]["1_one_decision"]["violations"] > 0


@pytest.mark.timeout(300)
def test_two_processes_killed_and_restarted_together_stay_exactly_once(make_settings: Any, tmp_path: Path) -> None:
    settings = make_settings(partitions=4, engine={"max_in_flight": 1_000})  # kills land mid-run, as above
    plan = ChaosPlan(kills=5, payments=80_000, accounts=3_000, processes=2, seed=3, wait_s=(0.05, 0.6))

    result = run_chaos(settings, plan, tmp_path)

    assert result.ok, result.verify_table
    assert result.report["kills"] == 5
    assert {incident["target"] for incident in result.report["incidents"]} <= {0, 1}
    assert result.report["verify"]["counts"]["payments"] == 80_000
    assert len([s for s in result.report["recovery_s"] if s is not None]) >= 2, result.report["recovery_s"]
