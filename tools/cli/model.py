"""`paystream model`: run the single-threaded reference model on inputs and summarise what it owes."""

from __future__ import annotations

import argparse
import json
from collections import Counter
from typing import Any


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "model", help="compute every output the inputs owe with the single-threaded reference model",
        description="Run the reference model (docs/RULES.md) in input order, each transfer's credit right "
                    "after it, and print decisions by outcome and reason, dead letters by reason, alerts by "
                    "rule and money totals.")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", metavar="FILE.jsonl",
                        help='records as `paystream generate --out` writes them: {"topic", "key", "value"} per line')
    source.add_argument("--from-topics", action="store_true", help="read the input topics (read_committed)")
    parser.add_argument("--json", metavar="FILE", help="also write every computed output as JSON to FILE")
    parser.set_defaults(func=handler)


def inputs_from_file(path: str, partitions: int) -> tuple[list[Any], list[Any]]:
    """Customer rows and payments records from a JSONL file; payments get the partition and
    offset Kafka's default partitioner would give them."""
    from verify.render import partition_of
    from verify.validation import InputRecord

    customers, payments = [], []
    offsets: Counter[int] = Counter()
    with open(path, "rb") as lines:
        for number, line in enumerate(lines):
            if not line.strip():
                continue
            row = json.loads(line)
            key = row["key"].encode() if row.get("key") is not None else None
            value = row["value"].encode() if row.get("value") is not None else None
            if row["topic"] == "customers":
                customers.append(InputRecord("customers", 0, number, key, value))
            else:
                partition = partition_of(key, partitions)
                payments.append(InputRecord("payments", partition, offsets[partition], key, value,
                                            timestamp=row.get("timestamp")))
                offsets[partition] += 1
    return customers, payments


def summary(outputs: Any) -> dict[str, Any]:
    """Counts and money totals of the model's outputs."""
    decisions = Counter(d.decision for d in outputs.decisions)
    reasons = Counter(reason for d in outputs.decisions for reason in d.reasons)
    money: dict[str, Counter[str]] = {}
    for fact in outputs.completed:
        money.setdefault(fact.currency, Counter())[fact.type] += fact.amount
    posted: Counter[str] = Counter()
    held: Counter[str] = Counter()
    for balance in outputs.final_balances().values():
        posted[balance.currency] += balance.posted
        held[balance.currency] += balance.held
    return {
        "decisions": dict(decisions), "reasons": dict(reasons.most_common()),
        "dlq": dict(Counter(invalid.reason or "ambiguous:" + "/".join(sorted(set(invalid.problems)))
                            for invalid in outputs.dead_letters).most_common()),
        "alerts": dict(Counter(alert.rule for alert in outputs.alerts)), "duplicates": outputs.duplicates,
        "ledger_entries": len(outputs.ledger), "balance_records": len(outputs.balances),
        "completed": len(outputs.completed), "accounts": len(outputs.final_balances()),
        "money": {currency: {**amounts, "posted": posted[currency], "held": held[currency]}
                  for currency, amounts in sorted(money.items())},
    }


def _print_summary(result: dict[str, Any]) -> None:
    def block(title: str, counts: dict[str, int]) -> None:
        print(title)
        for name, count in counts.items():
            print(f"  {name:<32} {count:>10}")

    block("decisions", result["decisions"])
    block("decline and review reasons", result["reasons"])
    block("dead letters by reason", result["dlq"])
    block("alerts by rule", result["alerts"])
    block("totals", {name: result[name] for name in ("duplicates", "ledger_entries", "balance_records",
                                                     "completed", "accounts")})
    for currency, amounts in result["money"].items():
        block(f"money in {currency} (minor units)", amounts)


def handler(args: argparse.Namespace) -> int:
    from verify.geo import distance_km
    from verify.model import run_input_order
    from verify.render import output_bodies
    from verify.validation import customer_table

    settings = args.settings
    if args.input:
        customers, payments = inputs_from_file(args.input, settings.kafka.partitions)
        partitions = None  # the file has no partitions: nothing can be misrouted
    else:
        from verify.readback import partition_count, read_topics

        records = read_topics(settings, [settings.topics.customers, settings.topics.payments])
        customers, payments = records[settings.topics.customers], records[settings.topics.payments]
        partitions = partition_count(settings, settings.topics.payments)
    outputs = run_input_order(payments, customer_table([(r.key, r.value) for r in customers]), settings.rules,
                              distance_km, partitions)
    result = summary(outputs)
    _print_summary(result)
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"summary": result, **output_bodies(outputs)}, out)
    return 0
