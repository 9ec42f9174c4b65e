"""Shadow mode: candidate rules run beside the live flow on the same inputs, write only to their
own `*-shadow` topics, and are each exactly-once under their own rules."""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Any

from tools.cli.generate import produce_traffic
from tools.cli.run import run
from tools.shadow import shadow_settings
from tools.topics import delete_topics, topic_specs
from verify.audit import audit
from verify.geo import distance_km
from verify.readback import read_snapshot


def outcomes(snapshot: Any) -> Counter[str]:
    return Counter(json.loads(record.value)["decision"] for record in snapshot.decisions)


def test_a_shadow_flow_decides_the_same_payments_under_its_rules_and_writes_nothing_live(
        make_settings: Any, tmp_path: Path, capsys: Any) -> None:
    settings = make_settings(partitions=4, engine={"http_port": 0})
    produce_traffic(settings, accounts=300, payments=2_000, seed=31, bad_ratio=0.01, progress=False)
    candidate = tmp_path / "candidate.toml"
    candidate.write_text("[rules.single_limit]\nmax_amount = 5000\n")
    shadow = shadow_settings(settings, msgspec_rules(candidate))
    try:
        args = argparse.Namespace(settings=settings, processes=1, workers_per_process=1, epoch_ms=None,
                                  until_caught_up=2_000, timeout=300.0, log_dir=str(tmp_path / "logs"),
                                  shadow=str(candidate))
        assert run(args) == 0
        printed = capsys.readouterr().out
        assert "payments decided by both" in printed and "-> declined" in printed

        live, shadowed = read_snapshot(settings), read_snapshot(shadow)
        assert audit(live, settings.rules, distance_km).ok  # the live flow as if alone
        assert audit(shadowed, shadow.rules, distance_km).ok  # the shadow: exactly-once under its own rules
        assert sum(outcomes(live).values()) == sum(outcomes(shadowed).values())  # the same payments decided
        assert outcomes(shadowed)["declined"] > outcomes(live)["declined"]
        assert len(shadowed.dlq) == len(live.dlq) > 0  # each flow dead-letters to its own topic
    finally:
        delete_topics(shadow, [spec.name for spec in topic_specs(shadow)
                               if spec.name.endswith("-shadow") or spec.name.startswith(shadow.engine.app_id)],
                      wait=False)


def msgspec_rules(path: Path) -> Any:
    from paystream.settings import load

    return load(path, environ={}).rules
