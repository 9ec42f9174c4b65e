"""`paystream verify --follow` exposes the latest audit as Prometheus text over HTTP."""

from __future__ import annotations

import urllib.request

from tests.verify.snapshots import SETTINGS, command, correct_snapshot, customer, input_records
from verify.audit import audit
from verify.geo import distance_km
from verify.metrics import MetricsServer, render


def test_the_violations_per_invariant_are_served_as_prometheus_text() -> None:
    customers, payments = input_records([(None, customer("A"))], [(b"A", command("deposit", "d1", "A", 5, 1))])
    snapshot, _ = correct_snapshot(customers, payments)
    snapshot.decisions.append(snapshot.decisions[0])  # a duplicated decision
    result = audit(snapshot, SETTINGS.rules, distance_km)
    server = MetricsServer(0, host="127.0.0.1")
    try:
        server.publish(render(result, rounds=3, duration_s=0.5))
        text = urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5).read().decode()
    finally:
        server.close()
    assert 'paystream_verify_violations{invariant="1_one_decision"} 1' in text
    assert 'paystream_verify_violations{invariant="5_dlq"} 0' in text
    assert "paystream_verify_ok 0" in text and "paystream_verify_rounds_total 3" in text
