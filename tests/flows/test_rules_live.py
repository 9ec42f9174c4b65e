"""Rules changed while the engine runs: `paystream rules set` publishes a stricter single-payment
cap, the running engine applies it to the payments it processes afterwards (no restart), every
decision records the version it was made under, and the auditor replays each under its own
version and stays green."""

from __future__ import annotations

import argparse
import json
import socket
import time
from typing import Any

from tools.cli.generate import _records
from tools.cli.rules import set_rules
from tools.runner import FlowProcesses, wait_until_caught_up
from tools.status import get, parse
from verify.audit import audit
from verify.geo import distance_km
from verify.readback import read_snapshot

CAP = 5_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def produce(settings: Any, records: list[Any]) -> None:
    """The generator's records (customers, payments) as it would produce them, with their timestamps."""
    from confluent_kafka import Producer

    from paystream.clients import producer_config

    topics = {"customers": settings.topics.customers, "payments": settings.topics.payments}
    producer = Producer(producer_config(settings))
    for kind, key, value, timestamp in records:
        producer.produce(topics[kind], value, key, timestamp=timestamp)
        producer.poll(0)
    assert producer.flush(30) == 0


def rules_version_in_force(port: int) -> float | None:
    status, body = get(f"http://127.0.0.1:{port}/metrics")
    if status != 200:
        return None
    return parse(body.decode()).get("paystream_table_version", {}).get((("table", "rules"),))


def test_a_published_cap_applies_to_later_payments_without_a_restart(make_settings: Any, tmp_path: Any) -> None:
    settings = make_settings(partitions=4, engine={"http_port": free_port()})
    # one history, produced in two halves around the change (one customer table for both)
    from tools.traffic import recent_start_ts

    records, _ = _records(400, 6_000, 21, 0.0, False, recent_start_ts(6_000, int(time.time() * 1000)))
    history = list(records)
    payments = [i for i, record in enumerate(history) if record[0] == "payments"]
    middle = payments[3_000]
    produce(settings, history[:middle])
    procs = FlowProcesses(settings, 1, log_dir=tmp_path / "logs")
    procs.start()
    try:
        wait_until_caught_up(settings, 3_000, timeout=300, procs=procs, progress=False)
        port = procs.http_port(0)
        assert rules_version_in_force(port) == 0
        published = set_rules(argparse.Namespace(settings=settings, changes=[f"single_limit.max_amount={CAP}"],
                                                 note="a stricter cap, from a test"))
        assert published == 0
        deadline = time.monotonic() + 60
        while rules_version_in_force(port) != 1:
            assert time.monotonic() < deadline, "the engine did not pick up the published rules"
            time.sleep(0.2)
        produce(settings, history[middle:])
        wait_until_caught_up(settings, 6_000, timeout=300, procs=procs, progress=False)
        assert procs.returncodes() == [None]  # the same process throughout: no restart
    finally:
        procs.stop()
    snapshot = read_snapshot(settings)
    decisions = [json.loads(record.value) for record in snapshot.decisions]
    first_half = {json.loads(history[i][2])["payment_id"] for i in payments[:3_000]}
    before = [d for d in decisions if d["payment_id"] in first_half]
    after = [d for d in decisions if d["payment_id"] not in first_half]
    assert before and after
    assert {d["rules_version"] for d in before} == {0} and {d["rules_version"] for d in after} == {1}
    capped = [d for d in after if d["type"] in ("authorize", "transfer") and d["amount"] > CAP]
    # refused earlier (an unknown customer...) or by the limits, never let through
    assert capped and all(d["decision"] == "declined" for d in capped)
    assert sum("single_limit_exceeded" in d["reasons"] for d in capped) > len(capped) // 2
    assert any(d["type"] == "authorize" and d["amount"] > CAP and d["decision"] == "approved" for d in before)
    result = audit(snapshot, settings.rules, distance_km)
    assert result.ok, result.table()
