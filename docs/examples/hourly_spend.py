"""An exactly-once application on the paystream engine, written only against its public API:
each account's card spend per hour of event time (tumbling windows), to its own topic.

    python -m bytewax.run docs/examples/hourly_spend.py:flow     (after `paystream topics create
    --app docs/examples/hourly_spend.py:HOURLY_SPEND`)

It reads the `authorize` commands of `payments`; a window closes when the account's first
command of a later hour arrives, and its total is written to `hourly-spend` in the same Kafka
transaction as the store change and the input offsets: after any crash, each window is written
exactly once. A command that does not decode goes to the dead-letter topic, in the same
transaction. See docs/ENGINE.md.
"""

from __future__ import annotations

from collections import Counter

import msgspec
from bytewax.dataflow import Dataflow

from connectors.application import Application, StoreSpec
from connectors.context import Context
from connectors.dataflow import build_flow
from paystream import settings as settings_module
from paystream.records import InboundRecord

HOUR_MS = 3_600_000


class Window(msgspec.Struct, array_like=True):
    """The open window of one account: its hour, the spend and the authorizations so far."""

    start: int
    total: int = 0
    count: int = 0


class Command(msgspec.Struct):
    type: str
    account: str
    amount: int
    ts: int


class HourlySpend(msgspec.Struct):
    account: str
    hour_start: int
    total: int
    count: int


_decode = msgspec.json.Decoder(Command).decode
_encode = msgspec.json.Encoder().encode


class HourlySpendProcessor:
    """One task's accounts: adds each authorization to its hour, emits an hour once it is over."""

    def __init__(self, context: Context) -> None:
        self.context = context
        self.windows = context.store("windows")
        self.counts: Counter[tuple[str, ...]] = Counter()

    def process(self, records: list[InboundRecord]) -> None:
        for record in records:
            try:
                command = _decode(record.value() or b"")
            except msgspec.DecodeError as error:
                self.context.dead_letter(record, "malformed", str(error))  # with the batch's other outputs
                continue
            if command.type != "authorize":
                continue
            start = command.ts - command.ts % HOUR_MS
            window = self.windows.get(command.account)
            if window is None:
                window = Window(start)
            elif start > window.start:  # a later hour: the open one is over
                summary = HourlySpend(command.account, window.start, window.total, window.count)
                self.context.send("hourly-spend", command.account.encode(), _encode(summary))
                window = Window(start)
            elif start < window.start:  # late for an hour already written: not counted
                self.counts[("late",)] += 1
                continue
            window.total += command.amount
            window.count += 1
            self.windows.put(command.account, window)


HOURLY_SPEND = Application("hourly-spend", processor=HourlySpendProcessor, inputs=("payments",),
                           outputs=("hourly-spend",), stores=(StoreSpec("windows", Window),))


def __getattr__(name: str) -> Dataflow:
    if name != "flow":
        raise AttributeError(name)
    return build_flow(settings_module.load(), HOURLY_SPEND)
