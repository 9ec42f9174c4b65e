"""An exactly-once application on the paystream engine, written only against its public API:
each account's card spend per hour of event time (tumbling windows), to its own topic.

    python -m bytewax.run docs/examples/hourly_spend.py:flow     (after `paystream topics create`
    and creating the `hourly-spend` topic with the same partition count)

It reads the `authorize` commands of `payments`; a window closes when the account's first
command of a later hour arrives, and its total is written to `hourly-spend` in the same Kafka
transaction as the store change and the input offsets: after any crash, each window is written
exactly once. See docs/ENGINE.md.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

import msgspec
from bytewax.dataflow import Dataflow

from connectors.application import Application
from connectors.dataflow import build_flow
from paystream import settings as settings_module
from paystream.records import InboundRecord, OutboundRecord
from paystream.settings import Settings
from state.store import Store

TOPIC = "hourly-spend"
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

    def __init__(self, settings: Settings, table: Mapping[str, Any], store: Store[Window]) -> None:
        self.store = store
        self.counts: Counter[tuple[str, ...]] = Counter()

    def process(self, records: list[InboundRecord]) -> list[OutboundRecord]:
        out: list[OutboundRecord] = []
        for record in records:
            try:
                command = _decode(record.value() or b"")
            except msgspec.DecodeError:
                self.counts[("skipped",)] += 1  # the payment engine dead-letters it; here it only counts
                continue
            if command.type != "authorize":
                continue
            start = command.ts - command.ts % HOUR_MS
            window = self.store.get(command.account)
            if window is None:
                window = Window(start)
            elif start > window.start:  # a later hour: the open one is over
                summary = HourlySpend(command.account, window.start, window.total, window.count)
                out.append((TOPIC, command.account.encode(), _encode(summary), None))
                window = Window(start)
            elif start < window.start:  # late for an hour already written: not counted
                self.counts[("late",)] += 1
                continue
            window.total += command.amount
            window.count += 1
            self.store.put(command.account, window)
        return out


HOURLY_SPEND = Application("hourly-spend", processor=HourlySpendProcessor, state_type=Window)


def __getattr__(name: str) -> Dataflow:
    if name != "flow":
        raise AttributeError(name)
    return build_flow(settings_module.load(), HOURLY_SPEND)
