"""`paystream bench` end to end on the real broker, small: the raw loop and paystream (simple
variant, 1 process) decide every payment exactly once, paystream recovers from `kill -9` with
its state restored from the changelog (with and without the snapshot cache), and the results
are written. Figures are recorded, never asserted against a speed."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from bench.harness import BenchPlan, run_bench
from bench.report import plot, table, write_json
from bench.workload import admin_client
from paystream.settings import load

PAYMENTS = 10_000
RECOVERY_ACCOUNTS = 20_000

pytestmark = [pytest.mark.broker, pytest.mark.timeout(900)]


def _run_topics_left(settings: Any, run_id: str, wait_s: float = 30.0) -> list[str]:
    deadline = time.monotonic() + wait_s
    while True:
        left = [name for name in admin_client(settings).list_topics(timeout=10).topics if run_id in name]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.5)


def test_bench_smoke_every_payment_has_exactly_one_decision_and_results_are_written(
        kafka_cluster: Any, tmp_path: Path) -> None:
    settings = load(environ={}, kafka={"bootstrap_servers": kafka_cluster.bootstrap_servers})
    plan = BenchPlan(payments=PAYMENTS, accounts=1_000, systems=["raw-eos", "paystream"], commit_ms=[1000],
                     latency_s=2.0, recovery_accounts=RECOVERY_ACCOUNTS)

    results = run_bench(settings, plan, say=lambda _line: None)
    path = write_json(results, tmp_path)
    picture = plot(results, tmp_path / "latest.png")

    written = json.loads(path.read_text())
    assert json.loads((tmp_path / "latest.json").read_text()) == written
    assert written["payments"] == PAYMENTS and written["partitions"] == 12
    assert [row["system"] for row in written["systems"]] == plan.systems
    for row in written["systems"]:
        assert row["status"] == "ok", row["status"]
        assert row["decisions"] == PAYMENTS
        assert row["distinct_payments"] == PAYMENTS
        assert row["duplicates"] == 0 and row["missing"] == 0
        assert 0 < row["startup_s"] < row["elapsed_s"]
        assert row["items_per_s"] == pytest.approx(PAYMENTS / row["elapsed_s"])
        assert 0 < row["cpu_percent"] < 100 * 16
        assert 10 < row["peak_rss_mib"] < 8_192
        latency = row["latency"]
        assert latency["samples"] > 0 and latency["received"] >= latency["sent"] > 0
        assert 0 <= latency["p50_ms"] <= latency["p99_ms"] <= latency["max_ms"]
        assert len(latency["cdf_ms"]) == 102 and latency["cdf_ms"] == sorted(latency["cdf_ms"])
    recovery = written["recovery"]
    assert recovery["status"] == "ok", recovery["status"]
    assert [case["with_snapshot"] for case in recovery["cases"]] == [True, False]
    for case in recovery["cases"]:
        # progress after the restart: a new commit, and output on every partition for read_committed readers
        assert case["kill_to_first_commit_s"] is not None and case["partitions_with_new_output"] == 12
        assert case["tasks_restored"] == 12 and case["accounts_after_open"] >= RECOVERY_ACCOUNTS
    with_cache, without_cache = recovery["cases"]
    assert with_cache["snapshots_loaded"] > 0 and with_cache["snapshot_records"] > 0
    assert without_cache["snapshots_loaded"] == 0 and without_cache["restored_records"] >= RECOVERY_ACCOUNTS
    on_disk = written["recovery_disk"]  # the disk-backed store: its database kept, then deleted
    assert on_disk["status"] == "ok", on_disk["status"]
    assert on_disk["tasks_with_snapshot"] == 12  # the premise: every task's database was labelled before the kill
    kept, wiped = on_disk["cases"]
    for case in on_disk["cases"]:
        assert case["kill_to_first_commit_s"] is not None and case["partitions_with_new_output"] == 12
        assert case["tasks_restored"] == 12
    assert wiped["restored_records"] >= RECOVERY_ACCOUNTS and kept["restored_records"] < wiped["restored_records"]
    assert {check["target"] for check in written["targets"]} >= {
        "simple, 1 process ≥ 40% of the raw transactional loop", "changelog restore ≥ 600,000 keys/s with ≤ 1 GiB RSS"}
    printed = table(written)
    assert "raw-eos" in printed and "paystream" in printed and "kill -9" in printed
    assert picture.stat().st_size > 10_000
    assert _run_topics_left(settings, written["run_id"]) == []


def test_bench_smoke_the_realistic_flow_has_one_decision_per_valid_payment_and_a_measured_latency(
        kafka_cluster: Any, tmp_path: Path) -> None:
    """The seven-rule flow's row: its throughput run is checked like the others, and its latency
    run paces the generator's wire-contract commands (its customer table loaded first)."""
    settings = load(environ={}, kafka={"bootstrap_servers": kafka_cluster.bootstrap_servers})
    plan = BenchPlan(payments=5_000, accounts=500, systems=["paystream-full"], commit_ms=[1000],
                     latency_s=2.0, recovery_accounts=0)
    [row] = run_bench(settings, plan, say=lambda _line: None)["systems"]
    assert row["status"] == "ok", row["status"]
    assert row["workload"] == "realistic" and row["missing"] == 0 and row["duplicates"] == 0
    latency = row["latency"]
    assert latency["samples"] > 0 and latency["received"] >= latency["sent"] > 0
    assert 0 <= latency["p50_ms"] <= latency["p99_ms"] <= latency["max_ms"]
