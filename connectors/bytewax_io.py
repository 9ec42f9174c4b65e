"""Bytewax connectors for paystream's tasks: a partitioned source and the transactional sink.

Items are `(task_id, [InboundRecord, ...])`: one item per polled batch, so Bytewax's
per-item cost is paid per batch, not per payment. One Bytewax partition per task, with the
same partition names on both sides, so task p's source and sink share one `TaskRuntime`.

The sink runs the domain core in `write_batch` and commits the task's transaction in
`snapshot()`, the one hook Bytewax calls at each epoch's close (after the epoch's last
`write_batch`), with or without `-r`. Bytewax's own recovery store is not used: Kafka is the
truth, and a restart resumes every task from what its last transaction committed.

Bytewax calls `snapshot()` only on a sink partition that received items in the epoch, so an
idle task's source emits one empty batch when its positions are due for a refresh.

A graceful stop (`paystream.shutdown`): once SIGTERM or SIGINT arrives, every source partition
ends its input (`StopIteration`); Bytewax then writes what is in flight and calls `snapshot()`
one last time on every sink partition that wrote since its last commit, so the open epoch is
committed, and `cli_main` returns. The tasks' clients are closed afterwards
(`connectors.tasks.close_all`), not in a partition's `close()`: Bytewax closes a source
partition before the sink's final commit.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from connectors import health
from connectors.application import Application
from connectors.tasks import TaskRegistry, TaskRuntime, registries, task_ids
from paystream import allocator, shutdown
from paystream.records import InboundRecord
from paystream.settings import Settings

TaskBatch = tuple[str, list[InboundRecord]]


class TaskRuntimeLike(Protocol):
    """What the sink needs of a task: `TaskRuntime` (Kafka) and `MemoryTask` (tests) both have it."""

    def process(self, records: list[InboundRecord]) -> None: ...

    def commit(self) -> None: ...
_IDLE = timedelta(milliseconds=5)


class TaskSourcePartition(StatefulSourcePartition[TaskBatch, None]):
    """Reads one task's inputs (partition p of each) from its committed offsets."""

    def __init__(self, registry: TaskRegistry, task_id: str, max_batch: int) -> None:
        self._task_id = task_id
        self._opening = registry.opening(task_id)
        # a table that follows Kafka has `check()`: it raises once its follower stopped
        self._table_checks: list[Callable[[], None]] = [
            check for table in registry.tables().values() if (check := getattr(table, "check", None)) is not None]
        self._runtime: TaskRuntime | None = None
        self._max_batch = max_batch
        self._awake: datetime | None = None

    def next_batch(self) -> list[TaskBatch]:
        health.beat()
        if shutdown.requested():
            raise StopIteration  # Bytewax commits the open epoch (sink snapshot) and ends the flow
        for check in self._table_checks:
            check()  # a dead table follower stops the worker: never decide on a frozen table
        if self._runtime is None:
            if not self._opening.done():
                self._awake = datetime.now(UTC) + _IDLE
                return []
            self._runtime = self._opening.result()  # re-raises a failed open: the worker stops
        self._runtime.check()  # re-raises a failed commit: the worker stops
        records = self._runtime.poll(self._max_batch)
        if not records:
            self._awake = datetime.now(UTC) + _IDLE
            if self._runtime.take_refresh():
                return [(self._task_id, [])]  # an empty batch: the sink commits the positions at the epoch's close
            return []
        self._awake = None
        return [(self._task_id, records)]

    def next_awake(self) -> datetime | None:
        return self._awake

    def snapshot(self) -> None:
        return None  # resume positions live in Kafka, committed with the task's transaction


class TaskSource(FixedPartitionedSource[TaskBatch, None]):
    """One partition per task; every worker can build any task."""

    def __init__(self, settings: Settings, registry: TaskRegistry) -> None:
        self._settings = settings
        self._registry = registry

    def list_parts(self) -> list[str]:
        return task_ids(self._settings, self._registry.app)

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> TaskSourcePartition:
        return TaskSourcePartition(self._registry, for_part, self._settings.engine.max_batch)


class TaskSinkPartition(StatefulSinkPartition[list[InboundRecord], None]):
    """Processes one task's batches and commits them at each epoch's close."""

    def __init__(self, runtime: Callable[[], TaskRuntimeLike]) -> None:
        self._runtime_factory = runtime
        self._runtime: TaskRuntimeLike | None = None

    def _task(self) -> TaskRuntimeLike:
        if self._runtime is None:
            self._runtime = self._runtime_factory()
        return self._runtime

    def write_batch(self, values: list[list[InboundRecord]]) -> None:
        task = self._task()
        for records in values:
            task.process(records)

    def snapshot(self) -> None:
        self._task().commit()
        return None


class TaskSink(FixedPartitionedSink[list[InboundRecord], None]):
    """Routes each `(task_id, batch)` to its task's partition."""

    def __init__(self, parts: list[str], runtime_for: Callable[[str], TaskRuntimeLike]) -> None:
        self._parts = parts
        self._index = {part: i for i, part in enumerate(sorted(parts))}
        self._runtime_for = runtime_for

    def list_parts(self) -> list[str]:
        return self._parts

    def part_fn(self, item_key: str) -> int:
        # Bytewax indexes this into the sorted global partition list: give the task's own index.
        return self._index[item_key]

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> TaskSinkPartition:
        return TaskSinkPartition(lambda: self._runtime_for(for_part))


def kafka_source_and_sink(settings: Settings, app: Application,
                          runtime: type[TaskRuntime] = TaskRuntime) -> tuple[TaskSource, TaskSink]:
    """The production pair: real Kafka tasks of `app`, opened once per process (SIGTERM stops them
    gracefully). `runtime`: the task class (tests inject variants of it, never settings)."""
    allocator.limit_arenas(settings.engine.malloc_arenas)  # before the tasks' threads start
    shutdown.install(settings.engine.shutdown_timeout_ms)
    registry = TaskRegistry(settings, app, runtime=runtime)
    health.serve(settings, registries)
    return TaskSource(settings, registry), TaskSink(task_ids(settings, app),
                                                    lambda task: registry.opening(task).result())
