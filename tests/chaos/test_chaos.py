"""Chaos runs on the real broker: `kill -9`s of the workers, then the independent audit.

Each run uses fresh topics and app id (`make_settings`), generated traffic with 1% malformed
records, the commit-path fault points armed in the workers, and `verify`'s auditor at the end.

The kills are triggered by committed progress (the plan's default): kill k of K fires once the
group has committed `round(k * N / (K + 1))` of the N payments, and until it has fired the
topic holds only the payments up to halfway to the next threshold (the last ones come after
the last kill). So, by construction and however fast or slow the machine is, every kill fires
at or after its threshold and while work remains (the group cannot commit a payment that is
not in the topic yet). The tests assert exactly that, never a count of kills that happened to
land mid-run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tools.chaos import ChaosPlan, ChaosResult, ChaosRun

pytestmark = [pytest.mark.chaos]


def run_chaos(settings: Any, plan: ChaosPlan, tmp_path: Path) -> ChaosResult:
    result = ChaosRun(settings, plan, tmp_path / "logs", say=lambda line: print(line, flush=True)).run()
    print(result.verify_table)
    print(json.dumps({k: v for k, v in result.report.items() if k not in ("verify", "incidents")}, indent=1))
    return result


def assert_kills_fired_as_planned(report: dict[str, Any], plan: ChaosPlan) -> None:
    """Exactly the planned kills, each at or after its threshold and before the last payment was
    committed (what the progress trigger guarantees), each followed by a restart. That the engine
    then recovered is shown by the run itself: it only ends once every payment is committed."""
    kills = [incident for incident in report["incidents"] if incident["kind"] == "worker_kill"]
    assert report["trigger"] == "progress"
    assert report["kills"] == len(kills) == plan.kills
    assert [incident["threshold"] for incident in kills] == plan.thresholds() == report["thresholds"]["worker_kills"]
    for incident in kills:
        # no more payments than `limit` were in the topic until the kill had fired
        assert incident["threshold"] <= incident["committed_before"] <= incident["limit"] < plan.payments, incident
    assert report["kills_while_work_remained"] == plan.kills
    assert report["restarts"] == report["kills"] + report["restarts_after_deaths"]


def test_progress_thresholds_spread_the_kills_and_leave_work_after_the_last() -> None:
    plan = ChaosPlan(kills=4, payments=150_000, broker_kills=2)

    assert plan.thresholds() == [30_000, 60_000, 90_000, 120_000]
    assert plan.broker_thresholds() == [50_000, 100_000]
    # (kind, threshold, payments in the topic until the kill): halfway to the next threshold
    order = [(shot.kind, shot.threshold, shot.limit) for shot in plan.schedule()]
    assert order == [("worker_kill", 30_000, 40_000), ("broker_kill", 50_000, 55_000),
                     ("worker_kill", 60_000, 75_000), ("worker_kill", 90_000, 95_000),
                     ("broker_kill", 100_000, 110_000), ("worker_kill", 120_000, 135_000)]
    assert plan.held_back() == 15_000  # half the 30,000 payments after the last threshold
    # a worker and a broker kill at the same threshold share its limit
    tied = ChaosPlan(kills=5, payments=120, broker_kills=2).schedule()
    assert [(shot.kind, shot.threshold, shot.limit) for shot in tied][1:3] == [("broker_kill", 40, 50),
                                                                                ("worker_kill", 40, 50)]
    assert ChaosPlan(kills=20, payments=21).problems() == []  # the last kill at 20, with 1 payment after it
    assert ChaosPlan(kills=3, payments=2).problems()  # the last threshold would be the last payment


def test_the_time_trigger_keeps_its_random_waits_and_holds_nothing_back() -> None:
    plan = ChaosPlan(kills=4, payments=150_000, broker_kills=2, trigger="time")

    assert plan.thresholds() == [] and plan.held_back() == 0
    order = [(shot.kind, shot.threshold) for shot in plan.schedule()]
    assert order == [("worker_kill", None), ("broker_kill", None), ("worker_kill", None), ("worker_kill", None),
                     ("broker_kill", None), ("worker_kill", None)]
    assert "unknown trigger" in " ".join(ChaosPlan(kills=1, payments=10, trigger="wall-clock").problems())


@pytest.mark.timeout(480)
def test_twenty_worker_kills_over_four_hundred_thousand_payments_lose_and_duplicate_nothing(
        make_settings: Any, tmp_path: Path) -> None:
    settings = make_settings(partitions=4)
    plan = ChaosPlan(kills=20, payments=400_000, accounts=5_000, seed=11)

    result = run_chaos(settings, plan, tmp_path)

    report = result.report
    assert result.ok, result.verify_table
    assert_kills_fired_as_planned(report, plan)
    # one process: every death by itself is one restart
    assert report["restarts"] == report["kills"] + report["fault_point_deaths"] + report["other_worker_exits"]
    counts = report["verify"]["counts"]
    assert counts["payments"] == 400_000
    assert counts["decisions"] == counts["commands"] - counts["duplicates"]  # every command decided once


@pytest.mark.timeout(300)
def test_the_broken_build_with_offsets_committed_outside_the_transaction_loses_decisions(
        make_settings: Any, tmp_path: Path) -> None:
    """The chaos run must be able to fail: offsets committed by the consumer before the
    transaction, and a `kill -9` between the two, lose the decisions of that epoch."""
    # 12 tasks each commit their first epoch of payments: the chance that none of them dies
    # inside its commit is 0.5 ** 12
    settings = make_settings(partitions=12)
    plan = ChaosPlan(kills=2, payments=60_000, accounts=2_000, seed=5, fault_chances={"mid_commit": 0.5},
                     flow="tests.chaos.broken_build:flow")

    result = run_chaos(settings, plan, tmp_path)

    assert result.report["fault_point_deaths"] >= 1
    assert result.report["fault_point_deaths_by_point"]["mid_commit"] >= 1
    assert not result.ok
    assert "1_one_decision" in result.violated
    assert result.report["verify"]["invariants"]["1_one_decision"]["violations"] > 0


@pytest.mark.timeout(300)
def test_two_processes_killed_and_restarted_together_stay_exactly_once(make_settings: Any, tmp_path: Path) -> None:
    settings = make_settings(partitions=4)
    plan = ChaosPlan(kills=5, payments=80_000, accounts=3_000, processes=2, seed=3)

    result = run_chaos(settings, plan, tmp_path)

    report = result.report
    assert result.ok, result.verify_table
    assert_kills_fired_as_planned(report, plan)
    # two processes: one restart may follow the deaths of both
    assert report["restarts_after_deaths"] <= report["fault_point_deaths"] + report["other_worker_exits"]
    assert {incident["target"] for incident in report["incidents"]} <= {0, 1}
    assert report["verify"]["counts"]["payments"] == 80_000


def test_the_process_schedule_plan_moves_through_every_count_evenly_over_the_kills() -> None:
    # segment 0 is the start, segment k follows the restart after kill k: the first count runs
    # from the start through the restarts after kills 1-20, the next ones 20 kills each
    counts = ChaosPlan(kills=100, payments=1_000_000, process_schedule=(1, 2, 3, 2, 1)).process_counts()
    assert counts == [1] * 21 + [2] * 20 + [3] * 20 + [2] * 20 + [1] * 20
    assert ChaosPlan(kills=100, payments=1_000_000, process_schedule=(1, 2, 3, 2, 1)).rescales() == 4
    assert ChaosPlan(kills=4, payments=100, process_schedule=(1, 2, 1)).process_counts() == [1, 1, 2, 2, 1]
    assert ChaosPlan(kills=3, payments=100, processes=2).process_counts() == [2, 2, 2, 2]  # no schedule
    assert ChaosPlan(kills=3, payments=100, process_schedule=(1, 2, 3, 2, 1)).problems()  # a count left out
    assert ChaosPlan(kills=4, payments=100, process_schedule=(1, 0)).problems()


@pytest.mark.timeout(300)
def test_a_rescale_schedule_of_one_two_three_two_one_processes_stays_exactly_once(
        make_settings: Any, tmp_path: Path) -> None:
    """Every kill's restart is a rescale: the whole cluster killed, a fresh one of the next size started."""
    settings = make_settings(partitions=4)
    plan = ChaosPlan(kills=4, payments=60_000, accounts=2_000, seed=13, process_schedule=(1, 2, 3, 2, 1))

    result = run_chaos(settings, plan, tmp_path)

    report = result.report
    assert result.ok, result.verify_table
    assert_kills_fired_as_planned(report, plan)
    # the processes started for each segment (the start, then after each kill) are the schedule's
    assert report["process_counts"] == plan.process_counts() == [1, 2, 3, 2, 1]
    assert report["rescales"] == plan.rescales() == 4
    kills = [incident for incident in report["incidents"] if incident["kind"] == "worker_kill"]
    assert [(i["processes_before"], i["processes_after"]) for i in kills] == [(1, 2), (2, 3), (3, 2), (2, 1)]
    assert all(i["target"] < i["processes_before"] for i in kills)
    # a cluster of three processes did run (each process index logs to its own file)
    assert sorted(path.name for path in (tmp_path / "logs").glob("worker-*.log")) == [
        "worker-0.log", "worker-1.log", "worker-2.log"]
    assert report["verify"]["counts"]["payments"] == 60_000
