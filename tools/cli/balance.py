"""`paystream balance ACCOUNT`: an account's live balance, from whichever engine process owns it
(`GET /accounts/{id}` on any process; connectors/queries.py)."""

from __future__ import annotations

import argparse
import json
import sys
import urllib.parse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("balance", help="an account's live balance (posted, held, available)")
    parser.add_argument("account")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=None, help="any process's HTTP port (default: engine.http_port)")
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tools.status import get

    port = args.port or args.settings.engine.http_port
    url = f"http://{args.host}:{port}/accounts/{urllib.parse.quote(args.account, safe='')}"
    status, body = get(url, timeout=10)
    if status == 0:
        print(f"paystream: no engine process answers at {url}: is it running (`paystream run`)?", file=sys.stderr)
        return 2
    answer = json.loads(body)
    if args.json or status != 200:
        print(json.dumps(answer, indent=2))
        return 0 if status == 200 else 1
    def amount(minor: int) -> str:  # minor units: the currency's exponent is not ours to guess
        return f"{minor:,} {answer['currency'] or '(no currency yet)'} minor units"

    print(f"account    {answer['key']}\nposted     {amount(answer['posted'])}\nheld       {amount(answer['held'])}\n"
          f"available  {amount(answer['available'])}\nevents     {answer['seq']}\n"
          f"task       {answer['task']} at input offsets {answer['positions']}")
    return 0
