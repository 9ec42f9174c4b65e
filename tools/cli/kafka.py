"""`paystream kafka up [--brokers 1|3] | down | status`: the local Apache Kafka of deploy/local."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("kafka", help="start, stop or inspect the local Kafka cluster")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    start = actions.add_parser("up", help="start a local KRaft cluster (idempotent) and print its bootstrap servers")
    start.add_argument("--brokers", type=int, choices=(1, 3), default=1, help="1 (default) or 3 for failure tests")
    start.set_defaults(func=handle_up)
    actions.add_parser("down", help="stop the local cluster and delete its data").set_defaults(func=handle_down)
    actions.add_parser("status", help="show each node: pid, alive, listener, log").set_defaults(func=handle_status)


def handle_up(args: argparse.Namespace) -> int:
    from deploy.local import cluster

    try:
        running = cluster.up(args.brokers)
    except cluster.ClusterError as error:
        print(f"paystream: {error}", file=sys.stderr)
        return 1
    print(running.bootstrap_servers)
    return 0


def handle_down(args: argparse.Namespace) -> int:
    from deploy.local import cluster

    cluster.down()
    print("local Kafka stopped")
    return 0


def handle_status(args: argparse.Namespace) -> int:
    from deploy.local import cluster

    rows = cluster.status()
    if not rows:
        print("no local Kafka cluster (run `paystream kafka up`)")
        return 1
    table = [("node", "pid", "alive", "listener", "log")]
    table += [(str(r.node_id), str(r.pid or "-"), "yes" if r.alive else "no", r.listener, r.log_path) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return 0 if all(r.alive for r in rows) else 1
