"""100,000 hostile records mixed with valid traffic through the real broker: every one lands in
`payments-dlq` exactly once with its reason (the independent auditor classifies each itself),
the valid payments around them are decided as the reference model says, and no worker stops."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from tools.cli.generate import _records
from tools.hostile import KINDS, hostile_records
from tools.runner import FlowProcesses, wait_until_caught_up
from tools.traffic import recent_start_ts
from verify.audit import audit
from verify.geo import distance_km
from verify.readback import read_snapshot

HOSTILE = 100_000
VALID = 10_000


def test_a_hundred_thousand_hostile_records_are_dead_lettered_once_and_the_rest_is_exactly_once(
        make_settings: Any, tmp_path: Any) -> None:
    from confluent_kafka import Producer

    from paystream.clients import producer_config

    settings = make_settings(partitions=4, engine={"http_port": 0})
    now = int(time.time() * 1000)
    valid, _ = _records(500, VALID, 41, 0.0, False, recent_start_ts(VALID, now))
    accounts = [f"ACC{n:08d}" for n in range(1, 501)]
    hostile = hostile_records(HOSTILE, accounts, seed=41, now_ms=now, oversized_every=40)
    topics = {"customers": settings.topics.customers, "payments": settings.topics.payments}
    producer = Producer(producer_config(settings))
    kinds: Counter[str] = Counter()
    for kind, key, value, timestamp in valid:
        producer.produce(topics[kind], value, key, timestamp=timestamp)
        if kind == "payments":  # ten hostile records after each valid payment
            for _ in range(10):
                attack, bad_key, bad_value, headers, stamp = next(hostile)
                kinds[attack] += 1
                producer.produce(topics["payments"], bad_value, bad_key, headers=headers, timestamp=stamp)
        producer.poll(0)
    assert producer.flush(60) == 0
    assert sum(kinds.values()) == HOSTILE and set(kinds) == set(KINDS)

    procs = FlowProcesses(settings, 1, log_dir=tmp_path / "logs")
    procs.start()
    try:
        wait_until_caught_up(settings, VALID + HOSTILE, timeout=600, procs=procs, progress=False)
        assert procs.alive() == [True]  # no record stopped the worker
    finally:
        procs.stop()
    snapshot = read_snapshot(settings)
    result = audit(snapshot, settings.rules, distance_km)
    assert result.ok, result.table()  # invariant 5: each invalid record once in the DLQ with its reason
    assert len(snapshot.dlq) == result.counts["invalid"] >= HOSTILE
    assert result.counts["decisions"] > VALID * 0.9  # the valid traffic around them was decided
    assert not any(name == "x-junk" for record in snapshot.dlq for name, _ in record.headers)
