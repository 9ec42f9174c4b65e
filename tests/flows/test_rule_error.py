"""A rule that raises, through the real broker: each command it raises on is declined
`rule_error` (fail closed) with one dead-letter copy saying why (card digits masked), the
worker and its partition go on, and the independent audit stays green."""

from __future__ import annotations

import time
from typing import Any

from tests.flows.test_rules_live import produce
from tools.cli.generate import _records
from tools.runner import FlowProcesses, wait_until_caught_up
from tools.traffic import recent_start_ts
from verify.audit import audit
from verify.geo import distance_km
from verify.readback import read_snapshot

PAYMENTS = 3_000
CARD = "4111111111111111"  # in the raising rule's message (tests/flows/raising_rule.py)


def test_commands_a_rule_raises_on_are_declined_and_dead_lettered_and_the_rest_flows(
        make_settings: Any, tmp_path: Any) -> None:
    settings = make_settings(partitions=2, engine={"http_port": 0})
    # recent timestamps: the topic's retention deletes records stamped long ago (the generator's default)
    records, _ = _records(80, PAYMENTS, 17, 0.0, False, recent_start_ts(PAYMENTS, int(time.time() * 1000)))
    produce(settings, list(records))

    procs = FlowProcesses(settings, 1, log_dir=tmp_path / "logs", flow="tests.flows.raising_rule:flow")
    procs.start()
    try:
        wait_until_caught_up(settings, PAYMENTS, timeout=300, procs=procs, progress=False)
        assert procs.alive() == [True]
    finally:
        procs.stop()
    snapshot = read_snapshot(settings)
    result = audit(snapshot, settings.rules, distance_km)
    assert result.ok, result.table()
    letters = [dict(record.headers) for record in snapshot.dlq]
    failed = [headers for headers in letters if headers["dlq.reason"] == b"rule_error"]
    assert len(failed) == result.counts["rule_errors"] > 10
    assert all(headers["dlq.error"].startswith(b"ValueError in _velocity_that_raises: cannot score card ")
               for headers in failed)
    assert not any(CARD.encode() in value for headers in letters for value in headers.values())
    assert result.counts["decisions"] == result.counts["commands"] - result.counts["duplicates"]
