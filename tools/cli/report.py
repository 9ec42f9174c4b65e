"""`paystream report`: what the engine decided, from the committed outputs, checked against the model."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("report", help="summarize the committed outputs and check them against the model")
    parser.set_defaults(func=run, needs_kafka=True)


def run(args: argparse.Namespace) -> int:
    from tools.report import report

    text, ok = report(args.settings)
    print(text)
    return 0 if ok else 1
