"""What the exactly-once runtime needs to know about an application, and nothing more.

An application gives the runtime a processor factory (its domain core, as one object per task),
the type of the values it keeps per key (the runtime changelogs, snapshots and restores them),
and, if it joins reference data, a loader for its global table. The runtime imports no
application: `flows/payments.py` declares the payment engine, `flows/simple.py` the
benchmark's one-rule workload, both over the same tasks, transactions and state.

>>> from collections import Counter
>>> class Count:
...     def __init__(self, settings, table, store):
...         self.store, self.counts = store, Counter()
...     def process(self, records):
...         for record in records:
...             key = record.key().decode()
...             self.store.put(key, self.store.get(key, 0) + 1)
...         return [("counts", record.key(), b"%d" % self.store.get(record.key().decode()), None)
...                 for record in records]
>>> counting = Application("counting", processor=Count, state_type=int)
>>> counting.table_of(None)
{}
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from paystream.records import InboundRecord, OutboundRecord
from paystream.settings import Settings
from state.store import Store


class Processor(Protocol):
    """An application's domain core for one task: records in, records to write out.

    - `process(records)`: the task's records of one batch, in order; returns what to produce
      in the task's current transaction. State lives in the task's `Store` (given to the
      factory), which tracks the keys it changed; the runtime writes them to the changelog at
      the commit.
    - `counts`: what the processor counted (decisions, dead letters...), for the logs and metrics.
    """

    counts: Counter[tuple[str, ...]]

    def process(self, records: list[InboundRecord]) -> list[OutboundRecord]: ...


# (settings, the global table, the task's store of `state_type` values) -> processor
ProcessorFactory = Callable[[Settings, Mapping[str, Any], Store[Any]], Processor]


@dataclass(frozen=True)
class Application:
    """An exactly-once application: its name, its processor, its stored value type, its table."""

    name: str
    processor: ProcessorFactory
    state_type: type
    table: Callable[[Settings], Mapping[str, Any]] | None = None  # None: no reference data

    def table_of(self, settings: Settings) -> Mapping[str, Any]:
        """The application's global table, loaded (and followed) once per process; empty without one."""
        return {} if self.table is None else self.table(settings)
