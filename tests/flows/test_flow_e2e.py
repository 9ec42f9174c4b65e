"""The payment dataflow end to end on the real broker: 20,000 generated payments through
`flows.payments:flow` in its own process, read back `read_committed` by the independent
auditor and compared with the reference model."""

from __future__ import annotations

from typing import Any

from tools.cli.generate import produce_traffic
from tools.runner import FlowProcesses, wait_until_caught_up
from verify.audit import audit
from verify.geo import distance_km
from verify.readback import read_snapshot


def test_twenty_thousand_payments_agree_with_the_reference_model(make_settings: Any, tmp_path: Any) -> None:
    settings = make_settings(partitions=4)
    summary = produce_traffic(settings, accounts=2_000, payments=20_000, seed=20, bad_ratio=0.01, progress=False)
    assert not summary.delivery_errors
    procs = FlowProcesses(settings, 1, log_dir=tmp_path / "logs")
    procs.start()
    try:
        wait_until_caught_up(settings, 20_000, timeout=300, procs=procs, progress=False)
    finally:
        procs.stop()
    result = audit(read_snapshot(settings), settings.rules, distance_km)
    assert result.ok, result.table()
    assert result.counts["decisions"] > 19_000 and result.counts["dlq"] > 100
