"""`paystream verify`: audit the topics against the six exactly-once invariants and the reference model."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "verify", help="audit every output topic (read_committed) against the invariants and the reference model",
        description="Read the inputs and every output topic from the beginning to their current end "
                    "(read_committed), check the exactly-once invariants of SPEC.md and agreement with the "
                    "reference model replayed in the engine's order. Exits 1 on any violation.")
    parser.add_argument("--json", metavar="FILE", help="also write the result as JSON to FILE")
    parser.add_argument("--follow", action="store_true",
                        help="keep auditing the live topics every --interval seconds, each time only up to the last "
                             "input the engine visibly processed (a full re-read per round)")
    parser.add_argument("--interval", type=float, default=30.0,
                        help="seconds between audits with --follow (default 30)")
    parser.add_argument("--metrics-port", type=int, default=None,
                        help="with --follow: serve Prometheus metrics on this port (/metrics)")
    parser.set_defaults(func=handler, needs_kafka=True)


def _audit_once(args: argparse.Namespace) -> Any:
    from verify.audit import audit, cut_at_outputs
    from verify.geo import distance_km
    from verify.readback import read_snapshot

    started = time.monotonic()
    snapshot = read_snapshot(args.settings)
    if args.follow:
        snapshot = cut_at_outputs(snapshot)  # a running engine has not reached the newest inputs yet
    read_s = time.monotonic() - started
    result = audit(snapshot, args.settings.rules, distance_km)
    result.counts["read_ms"] = int(read_s * 1000)
    result.counts["audit_ms"] = int((time.monotonic() - started - read_s) * 1000)
    return result


def _report(args: argparse.Namespace, result: Any) -> None:
    print(result.table())
    counts = result.counts
    print(f"read {counts['payments']} payments ({counts['invalid']} invalid, {counts['duplicates']} re-sent), "
          f"{counts['decisions']} decisions, {counts['ledger']} ledger entries, {counts['balances']} balances, "
          f"{counts['dlq']} dead letters in {counts['read_ms'] / 1000:.1f}s; "
          f"audited in {counts['audit_ms'] / 1000:.1f}s")
    sys.stdout.flush()
    if args.json:
        with open(args.json, "w") as out:
            json.dump(result.to_json(), out, indent=2)
    remember(result)


LAST_RESULT = Path(".paystream/verify-last.json")


def remember(result: Any) -> None:
    """Keep the latest result (with when it was taken) for `paystream status`."""
    LAST_RESULT.parent.mkdir(parents=True, exist_ok=True)
    LAST_RESULT.write_text(json.dumps({"at": time.time(), "ok": result.ok, "counts": result.counts}))


def handler(args: argparse.Namespace) -> int:
    from confluent_kafka import KafkaException

    if not args.follow:
        try:
            result = _audit_once(args)
        except KafkaException as error:
            print(f"paystream verify: cannot read the topics: {error}", file=sys.stderr)
            return 2
        _report(args, result)
        return 0 if result.ok else 1

    from verify.metrics import MetricsServer, render

    server = MetricsServer(args.metrics_port) if args.metrics_port is not None else None
    rounds, ok = 0, True
    try:
        while True:
            started = time.monotonic()
            result = _audit_once(args)
            rounds += 1
            ok = result.ok
            _report(args, result)
            if server is not None:
                server.publish(render(result, rounds, time.monotonic() - started))
            time.sleep(max(0.0, args.interval - (time.monotonic() - started)))
    except KeyboardInterrupt:
        return 0 if ok else 1
    finally:
        if server is not None:
            server.close()
