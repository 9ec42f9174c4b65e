"""`paystream backtest`: what candidate rules would have decided on the payments in history,
against the live rules (the engine's own domain core, replayed in memory; nothing is written)."""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("backtest", help="replay history under candidate rules and compare decisions")
    parser.add_argument("--rules", required=True, metavar="TOML",
                        help="a settings file whose [rules] are the candidate (missing rules keep their defaults)")
    parser.add_argument("--from", dest="since", metavar="T", help="first payment time: ISO 8601 or Unix ms")
    parser.add_argument("--to", dest="until", metavar="T", help="end (exclusive): ISO 8601 or Unix ms")
    parser.add_argument("--input", metavar="FILE", help="history from a `paystream generate --out` file, not Kafka")
    parser.add_argument("--plot", default=".paystream/backtest.png", help="where to draw the comparison (PNG)")
    parser.add_argument("--json", metavar="FILE", help="also write the comparison as JSON")
    parser.set_defaults(func=run)


def instant(text: str | None) -> int | None:
    """Unix milliseconds from `1700000000000` or `2026-12-01T10:00:00+00:00`."""
    if text is None:
        return None
    if text.isdigit():
        return int(text)
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def run(args: argparse.Namespace) -> int:
    from paystream import clients
    from paystream.settings import load
    from tools import backtest

    settings = args.settings
    candidate = load(args.rules, environ={}).rules
    if args.input:
        from tools.cli.model import inputs_from_file

        customers, payments = inputs_from_file(args.input, settings.kafka.partitions)
    else:
        from verify.readback import read_topics

        clients.require_topics(settings, [settings.topics.customers, settings.topics.payments])
        read = read_topics(settings, [settings.topics.customers, settings.topics.payments])
        customers, payments = read[settings.topics.customers], read[settings.topics.payments]
    result = backtest.backtest(settings, candidate, customers, payments, instant(args.since), instant(args.until))
    print(backtest.table(result))
    print(f"\nplot: {backtest.plot(result, Path(args.plot))}")
    if args.json:
        Path(args.json).write_text(json.dumps(result.to_json(), indent=2))
    return 0
