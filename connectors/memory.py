"""In-memory tasks for dataflow tests: the real flow and the real core, with Kafka's
transactions replaced by a dictionary that only shows records once their epoch committed.

>>> tasks = MemoryTasks(settings.load(), PAYMENTS, tables={"customers": {}})  # doctest: +SKIP
>>> run_main(build_flow(settings, tasks.source_and_sink(batches)))  # doctest: +SKIP
>>> tasks.committed["payment-decisions"]  # doctest: +SKIP
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from bytewax.testing import TestingSource

from connectors.application import Application
from connectors.bytewax_io import TaskBatch, TaskSink
from connectors.context import Context
from connectors.tasks import task_ids
from paystream.records import InboundRecord
from paystream.settings import Settings
from state.store import Store

Record = tuple[bytes | None, bytes | None, list[tuple[str, bytes]] | None]


class MemoryTask:
    """One task whose outputs stay pending until `commit`, like a Kafka transaction."""

    def __init__(self, owner: MemoryTasks, task_id: str) -> None:
        self.owner = owner
        self.task_id = task_id
        self.stores: dict[str, Store[Any]] = {
            spec.name: Store(spec.name, spec.value_type, owner.state.setdefault((task_id, spec.name), {}), spec.codec)
            for spec in owner.app.stores}
        self.context = Context(owner.settings, owner.app, task_id, self.stores, owner.tables)
        self.processor = owner.app.processor(self.context)
        self.pending: list[tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]] | None]] = []
        self.pending_offsets: dict[tuple[str, int], int] = {}
        self.commits = 0

    @property
    def accounts(self) -> dict[str, Any]:
        """The first store's values (the payment engine's accounts)."""
        return next(iter(self.stores.values())).data

    def process(self, records: list[InboundRecord]) -> None:
        self.pending.extend(self.processor.process(records) or [])
        self.pending.extend(self.context.drain())
        for record in records:
            self.pending_offsets[(record.topic(), record.partition())] = record.offset() + 1

    def commit(self) -> None:
        for topic, key, value, headers in self.pending:
            self.owner.committed[topic].append((key, value, headers))
        self.owner.offsets.update(self.pending_offsets)
        self.pending.clear()
        self.pending_offsets.clear()
        for store in self.stores.values():
            store.changed.clear()
        self.commits += 1


class MemoryTasks:
    """All tasks of one in-memory run; `committed` maps topic → records in commit order."""

    def __init__(self, settings: Settings, app: Application, tables: Mapping[str, Mapping[str, Any]]) -> None:
        self.settings = settings
        self.app = app
        self.tables = app.with_default_tables(settings, tables)
        self.committed: dict[str, list[Record]] = defaultdict(list)
        self.offsets: dict[tuple[str, int], int] = {}
        self.state: dict[tuple[str, str], dict[str, Any]] = {}  # (task, store) → its values
        self.tasks: dict[str, MemoryTask] = {}

    def task(self, task_id: str) -> MemoryTask:
        if task_id not in self.tasks:
            self.tasks[task_id] = MemoryTask(self, task_id)
        return self.tasks[task_id]

    def source_and_sink(self, batches: list[TaskBatch]) -> tuple[TestingSource[TaskBatch], TaskSink]:
        """A `TestingSource` of `(task_id, records)` batches and the task sink over these tasks."""
        return TestingSource(batches), TaskSink(task_ids(self.settings, self.app), self.task)


def batches_by_task(settings: Settings, records: list[InboundRecord],
                    batch_size: int = 100) -> list[tuple[str, list[InboundRecord]]]:
    """Group input records into per-task batches, as the Kafka source would (partition p → task p)."""
    by_task: dict[int, list[InboundRecord]] = defaultdict(list)
    for record in records:
        by_task[record.partition()].append(record)
    batches = []
    for partition, task_records in sorted(by_task.items()):
        task_id = f"{settings.topics.payments}-{partition}"
        for start in range(0, len(task_records), batch_size):
            batches.append((task_id, task_records[start:start + batch_size]))
    return batches
