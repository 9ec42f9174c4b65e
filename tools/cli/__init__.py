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
COMMANDS = ("demo", "kafka", "topics", "generate", "run", "report", "model", "verify", "chaos", "bench")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="paystream",
                                     description="Exactly-once payment processing on Bytewax and Kafka.")
    parser.add_argument("--config", help="a TOML settings file (default: $PAYSTREAM_CONFIG)")
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
    from paystream import logs

    try:
        from paystream import settings

        args.settings = settings.load(args.config)
        logs.configure(args.settings)
        return int(args.func(args) or 0)
    except SettingsError as error:
        print(f"paystream: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
