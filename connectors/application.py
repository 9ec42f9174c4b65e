"""An exactly-once application, as the runtime sees it: a declared topology and a processor.

An application declares its topology, and the runtime builds the Bytewax dataflow from it:

- `inputs`: the topics a task reads; task p reads partition p of each (co-partitioned: keyed
  alike, with the same partition count, checked before any task opens);
- `internal`: co-partitioned topics the application writes to and reads back (a repartition,
  e.g. the payment engine's credits to another account's task), named `{app_id}-{name}`, and
  purged by the runtime once every task has committed past their records;
- `outputs`: the topics it writes to;
- `stores`: named key → value stores per task, each changelogged to its own compacted topic
  `{app_id}-{store}-changelog`, snapshotted and restored by the runtime;
- `tables`: named global tables (reference data every task joins, loaded once per process);
- `queries`: named interactive queries over a store (`GET /{query}/{key}` on any process:
  `connectors/queries.py`), answered from the live task that owns the key;
- `counts`: the processor's counts as Prometheus counters (`CountMetric`).

A topic is named as the settings name it (a field of `[topics]`, e.g. `payments`, which a
deployment may rename) or literally (`hourly-spend`). The `processor` factory gets the task's
`Context` (`connectors.context`): its stores, tables, `send` and `dead_letter`.

>>> from collections import Counter
>>> class Count:
...     def __init__(self, context):
...         self.context, self.counts = context, Counter()
...     def process(self, records):
...         counts = self.context.store("counts")
...         for record in records:
...             key = record.key().decode()
...             counts.put(key, counts.get(key, 0) + 1)
...             self.context.send("counts", record.key(), b"%d" % counts.get(key))
>>> counting = Application("counting", processor=Count, inputs=("payments",), outputs=("counts",),
...                        stores=(StoreSpec("counts", int),))
>>> from paystream.settings import load
>>> counting.input_topics(load(environ={})), counting.changelog_topic(load(environ={}), "counts")
(('payments',), 'paystream-counts-changelog')
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from paystream.records import InboundRecord, OutboundRecord
from paystream.settings import Settings
from state.codec import Codec

if TYPE_CHECKING:
    from connectors.context import Context


class Processor(Protocol):
    """An application's logic for one task: records in, in order; outputs through its context.

    - `process(records)`: the task's records of one batch, in order. It changes the task's
      stores and sends outputs through its `Context`; it may also return a list of
      `(topic, key, value, headers)` records (topic names as `context.topic` resolves them):
      the hot path of a large application builds such a list anyway. Everything it sends joins
      the task's current transaction.
    - `counts`: what the processor counted (decisions, dead letters...), for the logs and metrics.
    """

    counts: Counter[tuple[str, ...]]

    def process(self, records: list[InboundRecord]) -> list[OutboundRecord] | None: ...


ProcessorFactory = Callable[["Context"], Processor]
TableLoader = Callable[[Settings], Mapping[str, Any]]


@dataclass(frozen=True)
class StoreSpec:
    """A named store of every task: `str` keys, values of `value_type` (msgspec-encodable).

    `codec`: how values go to the changelog (default: one versioned msgpack record per key,
    `state.codec.StructCodec`); `backend`: `memory`, `disk`, or None for `engine.store`.
    """

    name: str
    value_type: type
    codec: Codec | None = None
    backend: str | None = None


@dataclass(frozen=True)
class CountMetric:
    """How one family of a processor's `counts` is exported to Prometheus (`connectors/health.py`).

    A count `(family, v1, v2...)` adds to the counter `name` with `labels` = `(v1, v2...)`.
    Families no `CountMetric` declares are exported as `paystream_app_events_total{event, detail}`.
    Labels must be bounded sets (outcomes, reasons, rules), never ids.
    """

    name: str
    help: str
    labels: tuple[str, ...] = ()


@dataclass(frozen=True)
class Query:
    """An interactive query: `GET /{name}/{key}` answers `answer(value)` of `key` in `store`.

    `answer` sees the store's value of the key (never None) and returns what the HTTP answer shows
    of it (JSON-encodable): e.g. an account's balance, not its whole state.
    """

    store: str
    answer: Callable[[Any], Mapping[str, Any]]


@dataclass(frozen=True)
class Application:
    """An exactly-once application: its name, processor and topology (see the module docstring)."""

    name: str
    processor: ProcessorFactory
    inputs: tuple[str, ...] = ("payments",)
    outputs: tuple[str, ...] = ()
    internal: tuple[str, ...] = ()
    stores: tuple[StoreSpec, ...] = ()
    tables: Mapping[str, TableLoader] = field(default_factory=dict)
    table_topics: Mapping[str, str] = field(default_factory=dict)  # table -> the topic it follows (created, checked)
    # a table's stand-in where nothing follows Kafka (the test driver, backtests), if it has one
    table_defaults: Mapping[str, TableLoader] = field(default_factory=dict)
    dead_letters: str = "dlq"  # where `Context.dead_letter` writes (an output, added to `outputs`)
    counts: Mapping[str, CountMetric] = field(default_factory=dict)  # the processor's counts as metrics
    queries: Mapping[str, Query] = field(default_factory=dict)  # GET /{name}/{key} (connectors/queries.py)

    def __post_init__(self) -> None:
        names = [spec.name for spec in self.stores]
        if len(set(names)) != len(names):
            raise ValueError(f"application {self.name}: two stores share a name ({', '.join(names)})")
        if not self.inputs:
            raise ValueError(f"application {self.name}: declares no input topic")
        for query, spec in self.queries.items():
            if spec.store not in names:
                raise ValueError(f"application {self.name}: query {query!r} reads store {spec.store!r}, which it "
                                 f"does not declare")
        for name in self.internal:
            if name not in self.inputs:
                raise ValueError(f"application {self.name}: internal topic {name!r} must also be an input "
                                 f"(a task reads back partition p of what it writes there)")

    def topic(self, settings: Settings, name: str) -> str:
        """The Kafka topic of a declared name: `{app_id}-{name}` if internal, the `[topics]` setting
        of that name if there is one, else the name itself."""
        if name in self.internal:
            return f"{settings.engine.app_id}-{name}"
        configured = getattr(settings.topics, name, None)
        return configured if isinstance(configured, str) else name

    def input_topics(self, settings: Settings) -> tuple[str, ...]:
        return tuple(self.topic(settings, name) for name in self.inputs)

    def internal_topics(self, settings: Settings) -> tuple[str, ...]:
        return tuple(self.topic(settings, name) for name in self.internal)

    def output_topics(self, settings: Settings) -> tuple[str, ...]:
        """Every topic the application may write to: its outputs, its dead letters, its internal topics."""
        names = dict.fromkeys([*self.outputs, self.dead_letters, *self.internal])
        return tuple(self.topic(settings, name) for name in names)

    def changelog_topic(self, settings: Settings, store: str) -> str:
        return f"{settings.engine.app_id}-{store}-changelog"

    def changelog_topics(self, settings: Settings) -> tuple[str, ...]:
        return tuple(self.changelog_topic(settings, spec.name) for spec in self.stores)

    def task_topics(self, settings: Settings) -> tuple[str, ...]:
        """The topics partition p of which belongs to task p: inputs and changelogs."""
        return (*self.input_topics(settings), *self.changelog_topics(settings))

    def table_topic_names(self, settings: Settings) -> tuple[str, ...]:
        """The topics the global tables follow (they must exist before a task opens)."""
        return tuple(self.topic(settings, name) for name in self.table_topics.values())

    def with_default_tables(self, settings: Settings, given: Mapping[str, Mapping[str, Any]]
                            ) -> dict[str, Mapping[str, Any]]:
        """`given`, plus the stand-in of every table not given that has one; a table with neither
        is an error naming it."""
        tables = dict(given)
        for name, default in self.table_defaults.items():
            if name not in tables:
                tables[name] = default(settings)
        missing = set(self.tables) - set(tables)
        if missing:
            raise ValueError(f"application {self.name} joins tables it was not given: {', '.join(sorted(missing))}")
        return tables

    def load_tables(self, settings: Settings) -> dict[str, Mapping[str, Any]]:
        """Every global table, loaded (and followed) once per process."""
        return {name: load(settings) for name, load in self.tables.items()}
