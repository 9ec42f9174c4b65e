"""The capacity model reads its inputs from a benchmark run and scales them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tools.capacity import inputs_from, main, table


def results(**full: Any) -> dict[str, Any]:
    row = {"status": "ok", "steady_items_per_cpu_s": None}
    return {
        "run_id": "r1", "payments": 1_000_000, "accounts": 100_000,
        "systems": [
            {**row, "system": "paystream", "items_per_cpu_s": 100_000, "peak_rss_mib": 150},
            {**row, "system": "paystream-2p", "items_per_cpu_s": 80_000, "peak_rss_mib": 250},
            {**row, "system": "paystream-full", "items_per_cpu_s": 30_000, "steady_items_per_cpu_s": 33_000,
             "peak_rss_mib": 150 + 700, **full},
        ],
        "recovery": {"cases": [{"with_snapshot": True, "restore_keys_per_s": 1.0},
                               {"with_snapshot": False, "restore_keys_per_s": 400_000}]},
    }


def test_the_inputs_are_the_runs_own_figures() -> None:
    inputs = inputs_from(results())
    assert inputs.per_core == 33_000  # steady, when the run has it
    assert inputs.scaling == pytest.approx(0.8)
    assert inputs.bytes_per_account == pytest.approx(700 * 2**20 / 100_000)
    assert inputs.base_mib == 150 and inputs.restore_keys_per_s == 400_000


def test_ten_times_the_load_needs_about_ten_times_the_processes_and_a_tenth_of_the_state_each() -> None:
    inputs = inputs_from(results())
    small, large = inputs.plan(10_000_000, 100_000), inputs.plan(10_000_000, 1_000_000)
    assert 9 <= large.processes / small.processes <= 11
    assert large.partitions == 4 * large.processes
    assert large.memory_mib_per_process < small.memory_mib_per_process
    assert large.restore_s == pytest.approx(10_000_000 / large.processes / 400_000)


def test_a_run_without_the_rows_it_needs_is_refused_by_name() -> None:
    partial = results()
    partial["systems"] = [row for row in partial["systems"] if row["system"] != "paystream-2p"]
    with pytest.raises(ValueError, match="paystream-2p"):
        inputs_from(partial)


def test_the_command_prints_the_projection(tmp_path: Path, capsys: Any) -> None:
    path = tmp_path / "run.json"
    path.write_text(json.dumps(results()))
    assert main(["--results", str(path), "--rates", "100000"]) == 0
    out = capsys.readouterr().out
    assert "33,000 commands per CPU-second" in out
    assert out.strip().splitlines()[-1] == table(inputs_from(results()), 10_000_000, [100_000], 4_096).splitlines()[-1]
