"""`paystream status`: what the running engine processes say about themselves (their metrics
pages and readiness), with the rates of the last few seconds and the last verify result."""

from __future__ import annotations

import argparse
import json
import sys
import time


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("status", help="lag, rates, decisions, alerts and task health of the running engine")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=None,
                        help="the first process's HTTP port (default: engine.http_port); the next ones follow it")
    parser.add_argument("--processes", type=int, default=None,
                        help="how many processes (default: until one is missing)")
    parser.add_argument("--interval", type=float, default=3.0, help="seconds between two scrapes, for the rates")
    parser.add_argument("--json", action="store_true", help="the merged samples as JSON instead of a table")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tools import status
    from tools.cli.verify import LAST_RESULT

    port = args.port or args.settings.engine.http_port
    if args.json:
        views = status.look_all(args.host, port, args.processes)
        print(json.dumps(status.as_json(views), indent=2, sort_keys=True))
        return 0 if views and all(view.ready for view in views) else 1
    text, ok = status.status_text(args.host, port, args.processes, args.interval)
    print(text)
    if LAST_RESULT.exists():
        last = json.loads(LAST_RESULT.read_text())
        minutes = (time.time() - float(last["at"])) / 60
        print(f"last verify     {'green' if last['ok'] else 'VIOLATIONS'} ({minutes:,.0f} min ago, "
              f"{last['counts'].get('payments', 0):,} payments)")
    else:
        print("last verify     none yet (`paystream verify`)")
    sys.stdout.flush()
    return 0 if ok else 1
