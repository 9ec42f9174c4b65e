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
    start.add_argument("--secure", action="store_true",
                       help="also start a SASL_SSL node with ACLs (deploy/local/secure.py) and print how to connect")
    start.set_defaults(func=handle_up)
    stop = actions.add_parser("down", help="stop the local cluster and delete its data")
    stop.add_argument("--secure", action="store_true", help="stop the secured node instead")
    stop.set_defaults(func=handle_down)
    actions.add_parser("status", help="show each node: pid, alive, listener, log").set_defaults(func=handle_status)


def handle_up(args: argparse.Namespace) -> int:
    from deploy.local import cluster

    try:
        if args.secure:
            return _secure_up(args)
        running = cluster.up(args.brokers)
    except cluster.ClusterError as error:
        print(f"paystream: {error}", file=sys.stderr)
        return 1
    print(running.bootstrap_servers)
    return 0


def _secure_up(args: argparse.Namespace) -> int:
    """Start the secured node, create this deployment's topics and grant its principals their ACLs."""
    import msgspec

    from deploy.local import secure
    from tools.topics import create_topics

    secured = secure.up()
    settings = args.settings
    as_admin = msgspec.structs.replace(settings, kafka=msgspec.structs.replace(
        settings.kafka, bootstrap_servers=secured.bootstrap_servers, client=secured.client("admin")))
    create_topics(as_admin, brokers=1)
    secure.grant(secured, as_admin)
    print(f"SASL_SSL at {secured.bootstrap_servers}; topics created and ACLs granted for app id "
          f"{settings.engine.app_id!r}. The engine connects with:")
    print(f"  PAYSTREAM_KAFKA__BOOTSTRAP_SERVERS={secured.bootstrap_servers}")
    for key, value in secured.client("paystream").items():
        print(f"  PAYSTREAM_KAFKA__CLIENT__{key}={value}")
    print("(principals: admin, paystream, producer, auditor, intruder; passwords in deploy/local/secure.py, "
          "for this local test cluster only)")
    return 0


def handle_down(args: argparse.Namespace) -> int:
    from deploy.local import cluster, secure

    if args.secure:
        secure.down()
        print("secured local Kafka stopped")
        return 0
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
