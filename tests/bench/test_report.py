"""The benchmark report's verdicts on issue 14's targets, from a run's figures."""

from __future__ import annotations

from typing import Any

from bench.report import issue14_targets


def run(**full: Any) -> dict[str, Any]:
    row = {"status": "ok", "commit_ms": 1000, "steady_items_per_cpu_s": None}
    return {
        "commit_ms": [1000], "accounts": 100_000,
        "systems": [
            {**row, "system": "paystream", "items_per_s": 150_000, "steady_items_per_s": 200_000,
             "items_per_cpu_s": 100_000, "latency": {"rate": 100_000, "p50_ms": 600, "p99_ms": 1_050}},
            {**row, "system": "paystream-2p", "items_per_s": 200_000, "items_per_cpu_s": 95_000},
            {**row, "system": "kstreams-1", "items_per_s": 50_000, "steady_items_per_s": 64_000},
            {**row, "system": "paystream-full", "items_per_s": 30_000, "steady_items_per_s": 32_000,
             "peak_rss_mib": 900, "latency": {"rate": 16_000, "p50_ms": 700, "p99_ms": 1_500}, **full},
        ],
        "recovery": {"accounts": 1_000_000, "cases": [
            {"with_snapshot": True, "kill_to_first_commit_s": 1.2},
            {"with_snapshot": False, "kill_to_first_commit_s": 1.4, "restore_keys_per_s": 1_200_000}]},
    }


def verdicts(results: dict[str, Any]) -> dict[str, bool | None]:
    return {check["target"].split(":")[0]: check["met"] for check in issue14_targets(results)}


def test_each_target_is_judged_on_its_own_figure() -> None:
    judged = verdicts(run())
    assert judged == {
        "realistic flow ≥ 100,000 payments/s steady on 1 process, above Kafka Streams on the one-rule variant": False,
        "realistic flow RSS ≤ 300 MiB at 100,000 accounts": False,
        "simple flow": True,  # p99 1,050 ms within the 1 s epoch + 100 ms
        "realistic flow": False,
        "at one fixed rate every system sustains, paystream's p50 and p99 ≤ every peer's": None,
        "full changelog restore ≥ 1,000,000 keys/s": True,
        "kill -9 → new committed progress ≤ 1.5 s with 1,000,000 accounts": True,
        "2 processes ≥ 90% of 1 process's records per CPU-second": True,
    }


def test_a_fast_and_small_realistic_flow_meets_its_targets() -> None:
    judged = verdicts(run(steady_items_per_s=120_000, peak_rss_mib=280,
                          latency={"rate": 60_000, "p50_ms": 500, "p99_ms": 1_090}))
    speed = "realistic flow ≥ 100,000 payments/s steady on 1 process, above Kafka Streams on the one-rule variant"
    assert judged[speed]
    assert judged["realistic flow RSS ≤ 300 MiB at 100,000 accounts"] and judged["realistic flow"]
