"""The payment dataflow end to end on the real broker: 20,000 generated payments through
`flows.payments:flow` in its own process, read back `read_committed` by the independent
auditor and compared with the reference model; the process's metrics page agrees with what it
wrote, and its readiness probe answers."""

from __future__ import annotations

import json
import socket
import time
from collections import Counter
from typing import Any

from tools import dashboard, status
from tools.cli.generate import produce_traffic
from tools.runner import FlowProcesses, wait_until_caught_up
from tools.status import Samples, get, parse
from verify.audit import Snapshot, audit
from verify.geo import distance_km
from verify.readback import read_snapshot


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def by_label(samples: Samples, name: str, label: str) -> Counter[str]:
    return Counter({key: int(value) for key, value in status.by_label(samples, name, label).items()})


def field_counts(records: list[Any], name: str) -> Counter[str]:
    return Counter(json.loads(record.value)[name] for record in records)


def test_twenty_thousand_payments_agree_with_the_reference_model(make_settings: Any, tmp_path: Any) -> None:
    settings = make_settings(partitions=4, engine={"http_port": free_port()})
    summary = produce_traffic(settings, accounts=2_000, payments=20_000, seed=20, bad_ratio=0.01, progress=False)
    assert not summary.delivery_errors
    procs = FlowProcesses(settings, 1, log_dir=tmp_path / "logs")
    procs.start()
    recorder = dashboard.Recorder("127.0.0.1", procs.http_port(0), processes=1, interval=0.25).start()
    try:
        wait_until_caught_up(settings, 20_000, timeout=300, procs=procs, progress=False)
        recorder.sample()
        recorder.stop()
        picture = dashboard.draw(recorder.samples, tmp_path / "dashboard.png")  # what `paystream demo` draws
        assert picture is not None and picture.read_bytes()[:4] == b"\x89PNG"
        port = procs.http_port(0)
        deadline = time.monotonic() + 60
        while get(f"http://127.0.0.1:{port}/health/ready")[0] != 200:
            assert time.monotonic() < deadline, get(f"http://127.0.0.1:{port}/health/ready")
            time.sleep(0.2)
        assert get(f"http://127.0.0.1:{port}/health/live")[0] == 200
        status_code, metrics_page = get(f"http://127.0.0.1:{port}/metrics")
        assert status_code == 200
        metrics = parse(metrics_page.decode())
        text, ready = status.status_text("127.0.0.1", port, processes=None, interval=0)  # `paystream status`
        assert ready and "tasks           open 4" in text and "approved" in text, text
    finally:
        procs.stop()
    snapshot = read_snapshot(settings)
    result = audit(snapshot, settings.rules, distance_km)
    assert result.ok, result.table()
    assert result.counts["decisions"] > 19_000 and result.counts["dlq"] > 100
    assert_metrics_match_the_run(metrics, snapshot, settings)
    assert_no_card_number_left_the_input(settings, tmp_path, metrics_page)


def assert_no_card_number_left_the_input(settings: Any, tmp_path: Any, metrics_page: bytes) -> None:
    """PCI scope: the input carries full card numbers; nothing the engine wrote does (every output
    and internal topic, the DLQ, the changelog, the snapshot files, the logs, the metrics page)."""
    from pathlib import Path

    from tools.pan_scan import find_pans, scan_files, scan_records
    from tools.topics import topic_specs
    from verify.readback import read_topics

    payments = read_topics(settings, [settings.topics.payments])[settings.topics.payments]
    assert sum(len(find_pans(record.value or b"")) for record in payments) > 100  # the detector sees the input's
    written = [spec.name for spec in topic_specs(settings) if spec.name != settings.topics.payments]
    records = read_topics(settings, written)
    findings = scan_records((f"{topic}[{r.partition}]@{r.offset}", r.key, r.value, r.headers)
                            for topic, rs in records.items() for r in rs)
    findings += scan_files([Path(settings.engine.snapshot_dir), tmp_path / "logs"])
    findings += [f"metrics page: {pan[-4:]}" for pan in find_pans(metrics_page)]
    assert sum(len(rs) for rs in records.values()) > 20_000 and not findings, findings[:10]


def assert_metrics_match_the_run(metrics: Samples, snapshot: Snapshot, settings: Any) -> None:
    """One process, no restart: what it counted is exactly what it wrote and read."""
    assert metrics["paystream_tasks"][(("state", "open"),)] == 4
    inputs = by_label(metrics, "paystream_input_records_total", "topic")
    assert inputs[settings.topics.payments] == len(snapshot.payments)
    assert by_label(metrics, "paystream_decisions_total", "outcome") == field_counts(snapshot.decisions, "decision")
    assert by_label(metrics, "paystream_alerts_total", "rule") == field_counts(snapshot.alerts, "rule")
    dlq_reasons = Counter(dict(record.headers)["dlq.reason"].decode() for record in snapshot.dlq)
    assert by_label(metrics, "paystream_dead_letters_total", "reason") == dlq_reasons
    assert sum(metrics["paystream_commits_total"].values()) >= 4
    assert sum(metrics["paystream_store_keys"].values()) > 1_000
    assert metrics["paystream_commit_seconds_count"][()] >= 4
    assert metrics["paystream_table_keys"][(("table", "customers"),)] > 0
    labels = {name for samples in metrics.values() for key in samples for name, _ in key}
    assert not labels & {"account", "payment_id", "card", "pan"}  # no ids in labels
