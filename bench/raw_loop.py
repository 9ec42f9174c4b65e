"""The ceiling: a hand-written confluent-kafka consume → decide → produce loop.

`--mode eos` wraps each commit interval in one Kafka transaction (outputs plus input offsets via
`send_offsets_to_transaction`); `--mode alo` produces without transactions, flushes, then
commits offsets asynchronously (at-least-once). State is an in-memory dict: the loop restores
nothing after a crash, which is why it is only a ceiling, not a peer.

    python -m bench.raw_loop --bootstrap 127.0.0.1:9092 --input P --decisions D --balances B \
        --group G --commit-ms 1000 --mode eos
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from typing import Any

import msgspec
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from bench.simple_rule import OPENING_BALANCE, decide
from paystream.clients import consumer_config, producer_config
from paystream.settings import load

CONSUME_BATCH = 2_000


class Payment(msgspec.Struct, gc=False):
    """The fields of a simple-variant payment the loop reads (the others are ignored)."""

    payment_id: str
    account: str
    amount: int
    ts: int


class Decision(msgspec.Struct, gc=False):
    """One `decisions` value; `ts` is the input's, copied through for latency measurement."""

    v: int
    type: str
    payment_id: str
    account: str
    amount: int
    decision: str
    reason: str | None
    balance: int
    ts: int


class Balance(msgspec.Struct, gc=False):
    account: str
    balance: int


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("bootstrap", "input", "decisions", "balances", "group"):
        parser.add_argument(f"--{name}", required=True)
    parser.add_argument("--commit-ms", type=int, default=1_000)
    parser.add_argument("--mode", choices=("eos", "alo"), default="eos")
    return parser.parse_args(argv)


class PaymentLoop:
    """Consumes `payments`, decides each, produces the decision and the new balance."""

    def __init__(self, args: argparse.Namespace) -> None:
        settings = load(kafka={"bootstrap_servers": args.bootstrap})
        self.args = args
        self.exactly_once = args.mode == "eos"
        extra: dict[str, Any] = {"transactional.id": f"{args.group}-raw"} if self.exactly_once else {}
        self.producer = Producer(producer_config(settings, **extra))
        self.consumer = Consumer(consumer_config(settings, args.group))
        self.balances: dict[str, int] = {}
        self.decode = msgspec.json.Decoder(Payment).decode
        self.encode = msgspec.json.Encoder().encode
        self.pending = False  # something consumed since the last commit
        self.running = True

    def produce(self, topic: str, key: bytes, value: bytes) -> None:
        while True:
            try:
                self.producer.produce(topic, value, key)
                return
            except BufferError:  # the local queue is full: let librdkafka drain it
                self.producer.poll(0.01)

    def commit(self) -> None:
        """Make everything since the last commit visible together with its input offsets."""
        positions = [tp for tp in self.consumer.position(self.consumer.assignment()) if tp.offset >= 0]
        if self.exactly_once:
            if positions:
                self.producer.send_offsets_to_transaction(positions, self.consumer.consumer_group_metadata())
            self.producer.commit_transaction()
            self.producer.begin_transaction()
        else:
            self.producer.flush()  # outputs first: offsets must never run ahead of them
            if positions:
                self.consumer.commit(offsets=positions, asynchronous=True)
        self.pending = False

    def on_revoke(self, _consumer: Consumer, _partitions: list[TopicPartition]) -> None:
        if self.pending:
            self.commit()

    def on_assign(self, _consumer: Consumer, _partitions: list[TopicPartition]) -> None:
        print("RUNNING", flush=True)

    def run(self) -> None:
        topic_decisions, topic_balances = self.args.decisions, self.args.balances
        interval = self.args.commit_ms / 1000
        if self.exactly_once:
            self.producer.init_transactions()
            self.producer.begin_transaction()
        self.consumer.subscribe([self.args.input], on_assign=self.on_assign, on_revoke=self.on_revoke)
        next_commit = time.monotonic() + interval
        balances, decode, encode = self.balances, self.decode, self.encode
        while self.running:
            for message in self.consumer.consume(num_messages=CONSUME_BATCH, timeout=0.05):
                if message.error():
                    if message.error().code() == KafkaError._PARTITION_EOF:
                        continue
                    raise RuntimeError(f"consume failed: {message.error()}")
                payment = decode(message.value())
                balance = balances.get(payment.account, OPENING_BALANCE)
                decision, reason, balance = decide(balance, payment.amount)
                balances[payment.account] = balance
                key = message.key()
                self.produce(topic_decisions, key, encode(Decision(
                    1, "decision", payment.payment_id, payment.account, payment.amount,
                    decision, reason, balance, payment.ts)))
                self.produce(topic_balances, key, encode(Balance(payment.account, balance)))
                self.pending = True
            self.producer.poll(0)
            if time.monotonic() >= next_commit:
                if self.pending:
                    self.commit()
                next_commit = time.monotonic() + interval
        if self.pending:
            self.commit()
        self.consumer.close()
        self.producer.flush()


def main(argv: list[str] | None = None) -> int:
    loop = PaymentLoop(parse_args(argv))

    def stop(_signum: int, _frame: Any) -> None:
        loop.running = False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
