"""Backtests replay history through the engine's own domain core: the live rules decide what the
reference model decides, and a stricter single-payment cap declines more."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from paystream.settings import load
from tools import backtest
from tools.cli import main
from tools.cli.generate import write_traffic
from tools.cli.model import inputs_from_file
from verify.geo import distance_km
from verify.model import run_input_order
from verify.validation import customer_table


def history(tmp_path: Path) -> Path:
    path = tmp_path / "traffic.jsonl"
    write_traffic(str(path), accounts=300, payments=3_000, seed=7, bad_ratio=0.01, progress=False)
    return path


def test_a_stricter_cap_declines_more_and_the_live_rules_agree_with_the_model(tmp_path: Path) -> None:
    settings = load(environ={})
    customers, payments = inputs_from_file(str(history(tmp_path)), settings.kafka.partitions)
    stricter = msgspec.structs.replace(
        settings.rules, single_limit=msgspec.structs.replace(settings.rules.single_limit, max_amount=5_000))
    result = backtest.backtest(settings, stricter, customers, payments)

    assert result.payments == len(payments)
    assert result.candidate.outcomes["declined"] > result.live.outcomes["declined"]
    assert result.candidate.reasons["single_limit_exceeded"] > result.live.reasons["single_limit_exceeded"]
    # (a declined payment leaves funds and velocity room, so a later one may be approved instead)
    assert result.changed[("approved", "declined")] > 0 and len(result.examples[("approved", "declined")]) > 0

    # the independent model decides every valid command once and dead-letters the rest, as the replay did
    model = run_input_order(payments, customer_table([(r.key, r.value) for r in customers]), settings.rules,
                            distance_km)
    assert sum(result.live.outcomes.values()) == sum(result.candidate.outcomes.values()) == len(model.decisions)
    assert result.live.dead_letters == len(model.dead_letters)
    assert backtest.backtest(settings, settings.rules, customers, payments).changed == {}  # same rules: no change


def test_the_command_prints_the_table_and_draws_the_plot(tmp_path: Path, capsys: object) -> None:
    rules = tmp_path / "stricter.toml"
    rules.write_text("[rules.single_limit]\nmax_amount = 5000\n")
    picture = tmp_path / "backtest.png"
    assert main(["backtest", "--rules", str(rules), "--input", str(history(tmp_path)), "--plot", str(picture),
                 "--json", str(tmp_path / "backtest.json")]) == 0
    out = capsys.readouterr().out  # type: ignore[attr-defined]
    assert "single_limit_exceeded" in out and "-> declined" in out
    assert picture.stat().st_size > 10_000 and picture.read_bytes()[:4] == b"\x89PNG"


def test_a_backtest_reads_history_from_kafka_and_writes_nothing_there(make_settings: Any, tmp_path: Path,
                                                                       capsys: Any) -> None:
    import argparse

    from tools.cli.backtest import run
    from tools.cli.generate import produce_traffic
    from verify.readback import read_snapshot

    settings = make_settings(partitions=4)
    produce_traffic(settings, accounts=200, payments=2_000, seed=11, bad_ratio=0.01, progress=False)
    rules = tmp_path / "stricter.toml"
    rules.write_text("[rules.single_limit]\nmax_amount = 5000\n")
    args = argparse.Namespace(settings=settings, rules=str(rules), since=None, until=None, input=None,
                              plot=str(tmp_path / "backtest.png"), json=None)
    assert run(args) == 0
    out = capsys.readouterr().out
    assert "payments replayed (nothing written to Kafka)" in out
    assert "approved -> declined" in out
    written = read_snapshot(settings)
    assert not written.decisions and not written.dlq and not written.alerts  # nothing written to live topics
