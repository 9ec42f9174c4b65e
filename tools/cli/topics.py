"""`paystream topics create | describe`: make every paystream topic, or show how they are."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("topics", help="create or describe paystream's topics")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = actions.add_parser("create", help="create every topic (existing ones are kept)")
    create.add_argument("--brokers", type=int, default=None,
                        help="size replication for this many brokers (default: count them)")
    create.add_argument("--app", default=None, metavar="MODULE:APP",
                        help="the topics of this application (module:ATTRIBUTE or file.py:ATTRIBUTE; "
                             "default: the payment engine)")
    create.set_defaults(func=handle_create, needs_kafka=True)
    describe = actions.add_parser("describe",
                                  help="a table of partitions, replication, min.insync.replicas, cleanup and retention")
    describe.set_defaults(func=handle_describe, needs_kafka=True)


def handle_create(args: argparse.Namespace) -> int:
    from confluent_kafka import KafkaException

    from tools.topics import TopicError, create_topics, load_application

    try:
        app = load_application(args.app) if args.app else None
        names = create_topics(args.settings, args.brokers, app)
    except (TopicError, KafkaException, ValueError) as error:
        print(f"paystream: {error}", file=sys.stderr)
        return 1
    print(f"{len(names)} topics ready on {args.settings.kafka.bootstrap_servers}: {', '.join(names)}")
    return 0


def handle_describe(args: argparse.Namespace) -> int:
    from confluent_kafka import KafkaException

    from tools.topics import describe_topics

    try:
        infos = describe_topics(args.settings)
    except KafkaException as error:
        print(f"paystream: {error}", file=sys.stderr)
        return 1
    if not infos:
        print("no paystream topics (run `paystream topics create`)")
        return 1
    table = [("topic", "partitions", "replication", "min.insync", "cleanup", "retention")]
    for info in infos:
        retention = "-" if info.cleanup_policy == "compact" else _duration(info.retention_ms)
        table.append((info.name, str(info.partitions), str(info.replication_factor),
                      str(info.min_insync_replicas), info.cleanup_policy, retention))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return 0


def _duration(ms: int) -> str:
    if ms < 0:
        return "forever"
    if ms % 86_400_000 == 0:
        return f"{ms // 86_400_000}d"
    return f"{ms}ms"
