"""The stock Bytewax 0.21.1 peer: `bytewax.connectors.kafka` KafkaSource/KafkaSink around a
`stateful_map` of per-account balances.

The stock connectors write without transactions; with a recovery directory and a snapshot every
commit interval the flow is at-least-once (outputs written before a crash are written again on
replay), without one it has no guarantee at all. The harness runs it with recovery.

    python -m bench.bytewax_runner --bootstrap H:P --input P --decisions D --balances B \
        --commit-ms 1000 --recovery-dir DIR

(`python -m bytewax.run -s` takes whole seconds only, so this calls `cli_main` itself to allow
a 100 ms epoch; the snapshot interval is the epoch interval, as `bytewax.run` sets it.)
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import bytewax.operators as op
from bytewax.connectors.kafka import KafkaSink, KafkaSinkMessage, KafkaSource, KafkaSourceMessage
from bytewax.dataflow import Dataflow
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.run import cli_main

from bench.simple_rule import OPENING_BALANCE, decide, decision_record


def keyed_payment(message: KafkaSourceMessage[bytes, bytes]) -> tuple[str, dict[str, Any]]:
    """(account, payment) from one `payments` record."""
    return message.key.decode(), json.loads(message.value)


def decide_payment(balance: int | None, payment: dict[str, Any]) -> tuple[int, tuple[bytes, bytes]]:
    """Decide one payment; the state is the account's balance."""
    decision, reason, balance = decide(OPENING_BALANCE if balance is None else balance, payment["amount"])
    record = decision_record(payment, decision, reason, balance)
    new_balance = {"account": payment["account"], "balance": balance}
    return balance, (json.dumps(record).encode(), json.dumps(new_balance).encode())


def build_flow(bootstrap: str, payments: str, decisions: str, balances: str) -> Dataflow:
    """The simple payment variant as a Bytewax dataflow from `payments` to two output topics."""
    flow = Dataflow("bench_simple_payments")
    # the same librdkafka tweak every Python peer gets (KAFKA.md: it doubles Python consumers)
    messages = op.input("payments", flow,
                        KafkaSource([bootstrap], [payments], add_config={"fetch.queue.backoff.ms": "0"}))
    accounts = op.map("decode", messages, keyed_payment)
    outcomes = op.stateful_map("balance", accounts, decide_payment)

    def to_topics(item: tuple[str, tuple[bytes, bytes]]) -> list[KafkaSinkMessage[bytes, bytes]]:
        account, (decision, balance) = item
        key = account.encode()
        return [KafkaSinkMessage(key, decision, topic=decisions), KafkaSinkMessage(key, balance, topic=balances)]

    op.output("kafka", op.flat_map("to_topics", outcomes, to_topics), KafkaSink([bootstrap], None))
    return flow


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("bootstrap", "input", "decisions", "balances", "recovery-dir"):
        parser.add_argument(f"--{name}", required=True)
    parser.add_argument("--commit-ms", type=int, default=1_000)
    args = parser.parse_args(argv)
    recovery = Path(args.recovery_dir)
    recovery.mkdir(parents=True, exist_ok=True)
    init_db_dir(recovery, 1)
    flow = build_flow(args.bootstrap, args.input, args.decisions, args.balances)
    cli_main(flow, workers_per_process=1, epoch_interval=timedelta(milliseconds=args.commit_ms),
             recovery_config=RecoveryConfig(recovery, timedelta(0)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
