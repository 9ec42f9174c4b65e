"""The test driver: an application's tasks run in memory, with the runtime's commit semantics.

In the spirit of Kafka Streams' `TopologyTestDriver`: pipe records into the input topics, let
the tasks process them, close the epoch (`commit`), read what was committed and what the stores
hold, and simulate a crash (everything since the last commit is lost, every store is rebuilt
from its changelog, the inputs are read again from the committed positions). No Kafka, no
threads, no clock: a test of an exactly-once application runs in milliseconds and is
deterministic.

What it keeps of the runtime (`connectors.tasks`): task p reads partition p of every input
topic (records keyed by the murmur2 partitioner, as Java producers and paystream's do), its
processor sees the same `Context` (stores, tables, `send`, `dead_letter`), each store's changed
keys are written to its changelog with the store's own codec at each commit, and outputs become
visible only when their epoch commits. Records a task sends to an internal topic (the payment
engine's credits) are read by their task after that commit.

>>> from collections import Counter
>>> from connectors.application import Application, StoreSpec
>>> class Count:
...     def __init__(self, context):
...         self.context, self.counts = context, Counter()
...     def process(self, records):
...         store = self.context.store("counts")
...         for record in records:
...             key = record.key().decode()
...             store.put(key, store.get(key, 0) + 1)
...             self.context.send("counts", record.key(), b"%d" % store.get(key))
>>> counting = Application("counting", processor=Count, outputs=("counts",), stores=(StoreSpec("counts", int),))
>>> driver = Driver(counting)
>>> driver.pipe("payments", b"A", b"{}"); driver.pipe("payments", b"A", b"{}")
>>> driver.process(); driver.output("counts")
[]
>>> driver.commit(); [value for _, value, _ in driver.output("counts")]
[b'1', b'2']
>>> driver.pipe("payments", b"A", b"{}"); driver.process(); driver.crash()  # the 3rd is lost...
>>> driver.step(); [value for _, value, _ in driver.output("counts")]  # ...and read again, once
[b'1', b'2', b'3']
>>> driver.store("A", "counts").get("A")
3
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from connectors.application import Application, Processor
from connectors.context import Context
from connectors.tasks import task_id_of
from paystream.partitioning import partition_for
from paystream.records import InboundRecord, OutboundRecord
from paystream.settings import Settings, load
from state.store import Store

OutputRecord = tuple[bytes | None, bytes | None, list[tuple[str, bytes]] | None]  # key, value, headers


class _Task:
    def __init__(self, driver: Driver, partition: int) -> None:
        self.partition = partition
        app = driver.app
        self.stores: dict[str, Store[Any]] = {spec.name: Store(spec.name, spec.value_type, codec=spec.codec)
                                              for spec in app.stores}
        self.context = Context(driver.settings, app, task_id_of(driver.settings, partition, app), self.stores,
                               driver.tables)
        self.processor: Processor = app.processor(self.context)
        self.pending: list[OutboundRecord] = []  # this epoch's outputs: visible at the commit


class Driver:
    """An application's tasks over in-memory topics; see the module docstring.

    `settings`: partitions and topic names (default: `paystream.settings.load(environ={})`);
    `tables`: the application's global tables by name, as mappings (nothing is followed from Kafka).
    """

    def __init__(self, app: Application, settings: Settings | None = None,
                 tables: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        self.app = app
        self.settings = settings if settings is not None else load(environ={})
        self.tables = app.with_default_tables(self.settings, {} if tables is None else tables)
        self.partitions = self.settings.kafka.partitions
        self.inputs = app.input_topics(self.settings)
        self._log: dict[tuple[str, int], list[InboundRecord]] = defaultdict(list)  # every input record
        self._order: list[tuple[str, int, int]] = []  # (topic, partition, offset) in the order they arrived
        self._read: dict[tuple[str, int], int] = defaultdict(int)  # next offset each task reads
        self._committed_read: dict[tuple[str, int], int] = defaultdict(int)
        self._outputs: dict[str, list[OutputRecord]] = defaultdict(list)
        # each store's changelog, per task partition: (store, partition) → records in commit order
        self.changelogs: dict[tuple[str, int], list[tuple[bytes, bytes | None]]] = defaultdict(list)
        self._tasks: dict[int, _Task] = {}
        self.commits = 0

    # -- input ----------------------------------------------------------------------------

    def pipe(self, topic: str, key: bytes | None, value: bytes | None, *, timestamp: int | None = None,
             partition: int | None = None) -> None:
        """Append a committed record to an input topic (by default in the partition its key hashes to)."""
        if topic not in self.inputs:
            raise ValueError(f"{topic!r} is not an input of the tasks ({', '.join(self.inputs)})")
        if partition is None:
            partition = partition_for(key, self.partitions) if key is not None else 0
        log = self._log[(topic, partition)]
        log.append(InboundRecord(topic, partition, len(log), key, value, timestamp))
        self._order.append((topic, partition, len(log) - 1))

    # -- running --------------------------------------------------------------------------

    def task(self, partition: int) -> _Task:
        if partition not in self._tasks:
            self._tasks[partition] = _Task(self, partition)
        return self._tasks[partition]

    def process(self) -> None:
        """Every task processes the records it has not read yet, in the order they arrived."""
        batches: dict[int, list[InboundRecord]] = defaultdict(list)
        for topic, partition, offset in self._order:
            if offset >= self._read[(topic, partition)]:
                batches[partition].append(self._log[(topic, partition)][offset])
        for partition, records in sorted(batches.items()):
            task = self.task(partition)
            task.pending += task.processor.process(records) or []
            task.pending += task.context.drain()
            for record in records:
                self._read[(record.topic(), partition)] = record.offset() + 1

    def commit(self) -> None:
        """Close the epoch: each task's outputs, changelog records and input positions become durable
        together; records sent to an input topic (credits) can then be read by their task."""
        for partition, task in sorted(self._tasks.items()):
            for name, store in task.stores.items():
                changed = store.changed
                self.changelogs[(name, partition)] += store.codec.records(store.data, changed)
                changed.clear()
            for topic, key, value, headers in task.pending:
                if topic in self.inputs:
                    self.pipe(topic, key, value)
                else:
                    self._outputs[topic].append((key, value, headers))
            task.pending = []
        self._committed_read = defaultdict(int, self._read)
        self.commits += 1

    def step(self) -> None:
        """Process and commit until every record (credits included) is read and committed."""
        while True:
            self.process()
            self.commit()
            if all(self._read[where] >= len(log) for where, log in self._log.items()):
                return

    def crash(self) -> None:
        """`kill -9` of every task: uncommitted outputs and state are lost; each store is restored
        from its changelog and each input is read again from the last committed position."""
        self._read = defaultdict(int, self._committed_read)
        for partition in list(self._tasks):
            task = self._tasks[partition] = _Task(self, partition)
            for name, store in task.stores.items():
                latest: dict[bytes, bytes | None] = dict(self.changelogs[(name, partition)])
                store.codec.apply(latest, store.data)

    # -- reading --------------------------------------------------------------------------

    def output(self, topic: str) -> list[OutputRecord]:
        """The committed records of an output topic, in commit order."""
        return list(self._outputs.get(topic, []))

    def store(self, key: str, name: str | None = None) -> Store[Any]:
        """The store `name` (default: the application's first) of the task that owns `key`."""
        stores = self.task(partition_for(key.encode(), self.partitions)).stores
        if name is None:
            if not stores:
                raise ValueError(f"application {self.app.name} declares no store")
            return next(iter(stores.values()))
        return stores[name]

    def changelog(self, partition: int, name: str | None = None) -> list[tuple[bytes, bytes | None]]:
        """What task `partition` committed to the changelog of store `name` (default: the first)."""
        return list(self.changelogs[(name or self.app.stores[0].name, partition)])
