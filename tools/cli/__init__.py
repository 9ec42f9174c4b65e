"""The `paystream` command line: one sub-command per module in this package.

Each module defines `add_parser(subparsers)` which registers its sub-command and sets
`func(args) -> int` as the handler. Heavy imports stay inside the handlers so that
`paystream --help` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from paystream.settings import SettingsError

# sub-command modules, in the order `--help` lists them
COMMANDS = ("demo", "kafka", "topics", "generate", "run", "status", "balance", "rules", "report", "model",
            "backtest", "verify", "chaos", "bench", "capacity")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="paystream",
                                     description="Exactly-once payment processing on Bytewax and Kafka.")
    parser.add_argument("--config", help="a TOML settings file (default: $PAYSTREAM_CONFIG)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"tools.cli.{name}")
        except ModuleNotFoundError as error:
            if error.name != f"tools.cli.{name}":
                raise
            continue  # a sub-command not built yet
        module.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from paystream import clients, logs

    try:
        from paystream import settings

        args.settings = settings.load(args.config)
        logs.configure(args.settings)
        if getattr(args, "needs_kafka", False):
            clients.require_kafka(args.settings)  # one line within seconds, not a hang
        return int(args.func(args) or 0)
    except (SettingsError, clients.SetupError) as error:
        if args.debug:
            raise
        print(f"paystream: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
