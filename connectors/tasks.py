"""A task: partition p of an application's co-partitioned inputs (for the payment engine,
`payments` and its internal credits topic), with partition p of each of its stores' changelogs.

The task owns the state of the keys that hash to p, and commits, in ONE Kafka transaction per
epoch (`connectors.checkpoint`), everything it produced: its output records, the changelog
records of its stores' changed keys, what it sends to internal topics, and its input offsets.
Kafka is the single source of truth; local snapshots and disk stores are only caches
(`state.changelogged`).

Opening a task (`TaskRuntime.open`, numbered because the order is the correctness argument):
1. `init_transactions` with the task's stable `transactional.id`: every zombie of the task is
   fenced and its dangling transaction aborted (or completed), so offsets below are stable.
2. read the committed input offsets of the task's group (`read_committed`).
3. each store: load the newest local snapshot (or disk database) at or below its changelog's
   committed end, discarding newer ones;
4. each store: replay its changelog's tail after that (all of it without local state).
5. reconcile the group's offsets with the input positions the changelog recorded in the same
   transactions: a missing or older group offset (expired after `offsets.retention.minutes`,
   or the group deleted) resumes from the changelog's position; a group offset ahead of the
   changelog means the state lost committed changes, and the task refuses to open.
Then the task's state equals the state of its last committed transaction, and its inputs
resume right after the last committed record: nothing is lost, nothing applied twice.

Every commit carries the position of every input partition the task owns, read this epoch or
not, so an idle partition's committed offset is refreshed too (and an idle task commits its
positions every `engine.offsets_refresh_ms`).
"""

from __future__ import annotations

import operator
import threading
import time
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, cast

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from connectors.application import Application, Processor
from connectors.checkpoint import POSITIONS_KEY, Checkpoint, decode_positions, encode_positions
from connectors.context import Context
from connectors.topology import Topology, check_topology
from connectors.transactions import TaskProducer, transactional_id
from paystream import clients, logs, metrics, shutdown
from paystream.records import InboundRecord, OutboundRecord
from paystream.settings import Settings
from state.changelogged import ChangeloggedStore
from state.restore import watermarks
from state.store import Store

__all__ = ["POSITIONS_KEY", "TaskRegistry", "TaskRuntime", "TaskStateError", "decode_positions", "encode_positions",
           "reconcile", "task_id_of", "task_ids"]

# How long past its deadline a commit may take before its thread counts as stuck for good (a
# snapshot label query, 5 s, and a snapshot or disk-store write come after the Kafka deadline).
STUCK_GRACE_S = 20.0


class TaskStateError(RuntimeError):
    """The task's state and its committed input offsets disagree in a way that cannot be repaired."""


def reconcile(task_id: str, group: Mapping[tuple[str, int], int], changelog: Mapping[tuple[str, int], int] | None,
              log: Any = None) -> dict[tuple[str, int], int]:
    """Where each input resumes, from the group's committed offsets (-1: none) and the changelog's copy.

    >>> reconcile("t", {("p", 0): -1, ("c", 0): 7}, {("p", 0): 5, ("c", 0): 7})
    {('p', 0): 5, ('c', 0): 7}
    >>> reconcile("t", {("p", 0): 9}, {("p", 0): 5})  # doctest: +NORMALIZE_WHITESPACE
    Traceback (most recent call last):
    ...
    connectors.tasks.TaskStateError: task t: the group's committed offset 9 of p[0] is ahead of the position 5 its
    state reflects (the changelog lost committed changes, e.g. it was recreated); refusing to start rather than skip 4
    records. Restore the changelog, or reset the group to 5 if you accept reprocessing
    """
    resume: dict[tuple[str, int], int] = {}
    for where, committed in group.items():
        recorded = None if changelog is None else changelog.get(where)
        if recorded is None:
            resume[where] = committed
        elif committed > recorded:
            raise TaskStateError(
                f"task {task_id}: the group's committed offset {committed} of {where[0]}[{where[1]}] is ahead of the "
                f"position {recorded} its state reflects (the changelog lost committed changes, e.g. it was "
                f"recreated); refusing to start rather than skip {committed - recorded} records. Restore the "
                f"changelog, or reset the group to {recorded} if you accept reprocessing")
        else:
            if committed < recorded and log is not None:
                log.warning("committed offset missing or behind: resuming from the changelog's position",
                            topic=where[0], partition=where[1], committed=committed, changelog=recorded)
            resume[where] = recorded
    return resume


def task_id_of(settings: Settings, partition: int, app: Application | None = None) -> str:
    """Kafka Streams' naming: `{topic}-{partition}` of the application's first input (`payments`)."""
    topic = app.input_topics(settings)[0] if app is not None else settings.topics.payments
    return f"{topic}-{partition}"


def task_ids(settings: Settings, app: Application | None = None) -> list[str]:
    return [task_id_of(settings, p, app) for p in range(settings.kafka.partitions)]


def partition_of_task(task_id: str) -> int:
    return int(task_id.rsplit("-", 1)[1])


class ProcessMeter:
    """Records processed by every task of this process; logged every `interval` seconds."""

    def __init__(self, interval: float = 5.0) -> None:
        self.records = 0
        self.commits = 0
        self.commit_seconds = 0.0
        self._interval = interval
        self._started = False

    def start(self) -> None:
        if not self._started:
            self._started = True
            threading.Thread(target=self._report, name="meter", daemon=True).start()

    def _report(self) -> None:
        log = logs.get("meter")
        last_records, last = 0, time.monotonic()
        while True:
            time.sleep(self._interval)
            now = time.monotonic()
            records, commits = self.records, self.commits
            if records != last_records:
                log.info("throughput", records=records, records_per_s=int((records - last_records) / (now - last)),
                         commits=commits, commit_ms_avg=round(1000 * self.commit_seconds / max(commits, 1), 1))
            last_records, last = records, now


meter = ProcessMeter()


class TaskRuntime:
    """One task of `app` in this process: its consumer, producer, stores, context and processor.

    `tables`: the application's global tables by name (shared by the tasks of the process).
    """

    # The input positions also go into the changelog (hazard 3 of docs/LIFETIME.md).
    records_positions = True

    def __init__(self, settings: Settings, task_id: str, tables: Mapping[str, Mapping[str, Any]],
                 topology: Topology | None = None, *, app: Application) -> None:
        self.settings = settings
        self.app = app
        self.topology = topology
        self.task_id = task_id
        self.partition = partition_of_task(task_id)
        self.tables = app.with_default_tables(settings, tables)  # tests may give only some
        self.log = logs.get("task", task=task_id)
        self.stores: dict[str, ChangeloggedStore] = {}
        for spec in app.stores:
            topic = app.changelog_topic(settings, spec.name)
            self.stores[spec.name] = ChangeloggedStore(
                settings, spec.name, spec.value_type, spec.codec, backend=spec.backend or settings.engine.store,
                task_id=task_id, partition=self.partition, topic=topic,
                identity=topology.topic_ids.get(topic, "") if topology is not None else "")
        self.inputs = [TopicPartition(topic, self.partition) for topic in app.input_topics(settings)]
        self._internal = set(app.internal_topics(settings))
        # the next offset of every input partition: all of them go into every commit
        self.positions: dict[tuple[str, int], int] = {}
        self.changelog_positions: dict[tuple[str, int], int] | None = None  # as restored
        self._dirty = False  # records processed since the last commit
        self._last_commit = time.monotonic()
        self._refresh_taken = False
        self._last_purge = time.monotonic()
        self.epochs_since_snapshot = 0
        self.consumer: Consumer | None = None
        self.producer: TaskProducer | None = None
        self.context: Context | None = None
        self.processor: Processor | None = None
        self.opened_in_seconds = 0.0
        self._committing: Future[None] | None = None
        self.polled = self.processed = 0  # records handed to the dataflow / through the processor
        self.committed_once = False
        self.opened_at = time.perf_counter()
        self._pending: list[OutboundRecord] = []
        self.input_counts: Counter[str] = Counter()  # records processed, by input topic (metrics)
        self.commits = 0
        self._last_progress = time.monotonic()  # opened, or last committed (health)

    # the first store's view, for tools and tests of one-store applications
    @property
    def _first(self) -> ChangeloggedStore:
        return next(iter(self.stores.values()))

    @property
    def store(self) -> Store[Any]:
        return self._first.store

    @property
    def disk(self) -> Any:
        """The first store's database, if it is on disk (None in memory)."""
        return self._first.disk

    @property
    def accounts(self) -> dict[str, Any]:
        return self._first.store.data

    @property
    def snapshots(self) -> Any:
        return self._first.snapshots

    @property
    def changelog_end(self) -> int:
        return self._first.changelog_end

    @property
    def restored_records(self) -> int:
        """Changelog records read when the task opened, over all its stores."""
        return sum(store.restored_records for store in self.stores.values())

    # -- opening ------------------------------------------------------------------------

    def open(self) -> TaskRuntime:
        """Fence, read committed offsets, restore state; see the module docstring for the order."""
        started = time.perf_counter()
        settings = self.settings
        self.consumer = Consumer(
            clients.consumer_config(
                settings,
                settings.consumer_group,
                **{"client.id": transactional_id(settings, self.task_id) + "-in", "fetch.min.bytes": 1,
                   # fetched ahead: bounded (memory), yet far more than the task processes between polls
                   "queued.max.messages.kbytes": settings.engine.fetch_queue_kbytes,
                   "queued.min.messages": 4 * settings.engine.max_in_flight,
                   # when that is full, wait a little before fetching again: 0 (the clients' default
                   # here, for consumers that never fill it) spins the fetcher on a full queue
                   "fetch.queue.backoff.ms": 10,
                   # a position Kafka no longer has (records deleted under it) is an error, never a jump
                   "auto.offset.reset": "error"},
            )
        )
        self.producer = TaskProducer(settings, self.task_id, self.consumer.consumer_group_metadata())
        self.producer.init()  # 1. fence zombies
        consumer = self.consumer
        committed = clients.while_settling(lambda: consumer.committed(self.inputs, timeout=60))  # 2. committed offsets
        for tp in committed:
            if tp.error is not None:
                raise RuntimeError(f"task {self.task_id}: cannot read committed offset of {tp.topic}: {tp.error}")
        for index, store in enumerate(self.stores.values()):  # 3 + 4
            recorded = store.restore(consumer, POSITIONS_KEY)
            if index == 0 and recorded is not None:  # the first store's changelog carries the positions
                self.changelog_positions = decode_positions(recorded)
        group = {(tp.topic, tp.partition): tp.offset if tp.offset >= 0 else -1 for tp in committed}
        resume = reconcile(self.task_id, group, self.changelog_positions, self.log)  # 5
        if any(offset < 0 for offset in group.values()):
            self._last_commit = float("-inf")  # commit every position at once: the group lacks some
        for where, offset in resume.items():
            if offset < 0:  # never committed: from the first record Kafka still has
                resume[where] = watermarks(self.consumer, TopicPartition(*where))[0]
        start = [TopicPartition(topic, partition, offset) for (topic, partition), offset in resume.items()]
        self.positions = dict(resume)
        self.context = Context(settings, self.app, self.task_id,
                               {name: store.store for name, store in self.stores.items()}, self.tables)
        self.processor = self.app.processor(self.context)
        self.consumer.assign(start)
        self.opened_in_seconds = time.perf_counter() - started
        self.opened_at = time.perf_counter()
        self._last_progress = time.monotonic()
        meter.start()
        self.log.info("task open", keys={name: len(store.store) for name, store in self.stores.items()},
                      seconds=round(self.opened_in_seconds, 3),
                      resume={topic: offset for (topic, _), offset in resume.items()})
        return self

    # -- processing ---------------------------------------------------------------------

    def poll(self, max_records: int) -> list[InboundRecord]:
        """The next committed input records of this task, without waiting.

        Backpressure: at most `engine.max_in_flight` records read but not yet processed, so an
        epoch holds about what the task can process in it. Without this a restart with a
        backlog reads many seconds of work into its first epoch, and the first commit (the
        first visible progress after a crash) waits for all of it.
        """
        assert self.consumer is not None
        room = self.settings.engine.max_in_flight - (self.polled - self.processed)
        if room <= 0:
            return []
        messages = self.consumer.consume(min(max_records, room), timeout=0)
        for message in messages:
            if message.error() is not None:
                messages = self._without_errors(messages)
                break
        self.polled += len(messages)
        # `Message` has the accessors the processors use: no copy per record
        return cast("list[InboundRecord]", messages)

    def _without_errors(self, messages: list[Message]) -> list[Message]:
        kept: list[Message] = []
        for message in messages:
            error = message.error()
            if error is None:
                kept.append(message)
            elif error.code() == KafkaError._AUTO_OFFSET_RESET:
                raise TaskStateError(
                    f"task {self.task_id}: the position of {message.topic()}[{message.partition()}] is no longer in "
                    f"Kafka (its records were deleted under it: {error.str()}); refusing to skip them. Check the "
                    f"topic's retention, then restore or reset the group deliberately")
            elif error.code() != KafkaError._PARTITION_EOF:
                raise RuntimeError(f"task {self.task_id}: consume failed: {error}")
        return kept

    def process(self, records: list[InboundRecord]) -> None:
        """Run the domain core over `records`; their outputs join the task's next transaction.

        While the previous epoch's commit is still in flight (it runs on a commit thread),
        outputs wait in memory, so the worker never blocks on Kafka between epochs.
        """
        assert self.processor is not None and self.producer is not None and self.context is not None
        if not records:
            return
        outbound = self.processor.process(records) or []
        sent = self.context.drain()
        if sent:
            outbound = outbound + sent if outbound else sent
        meter.records += len(records)
        self.processed += len(records)
        if len(self.inputs) == 1:
            self.input_counts[self.inputs[0].topic] += len(records)
        else:
            self.input_counts.update(map(_topic_of, records))
        self._dirty = True
        # the last record of each input partition in the batch gives its next offset
        positions, seen = self.positions, set()
        for record in reversed(records):
            where = (record.topic(), record.partition())
            if where not in seen:
                seen.add(where)
                positions[where] = record.offset() + 1
                if len(seen) == len(self.inputs):
                    break
        if self._committing is None or self._committing.done():
            self._settle()
            if self._pending:
                outbound = self._pending + outbound
                self._pending = []
            self.producer.send(outbound)
        else:
            self._pending.extend(outbound)

    # -- committing ---------------------------------------------------------------------

    def commit(self, wait: bool = False) -> None:
        """Commit this epoch's work as one transaction (at each Bytewax epoch close).

        Waits for the previous epoch's commit and sends the outputs that waited for it, then
        prepares a `Checkpoint` (changelog records, input offsets, a snapshot's copy if due) and
        hands it to a commit thread: the worker goes on with the next epoch (its outputs wait in
        memory until this commit is back). A commit's failure is raised by the next
        `process`/`commit`/`check` call, which stops the worker.
        """
        assert self.processor is not None and self.producer is not None and self.consumer is not None
        self._settle()
        if self._pending:
            self.producer.send(self._pending)
            self._pending = []
        if not self._dirty and not self.producer.in_transaction and not self.refresh_due():
            return
        self.epochs_since_snapshot += 1
        snapshot_due = self.epochs_since_snapshot >= self.settings.engine.snapshot_every_epochs
        if snapshot_due:
            self.epochs_since_snapshot = 0
        checkpoint = Checkpoint(self, snapshot_due)
        self._dirty = False
        self._committing = _commit_pool.submit(checkpoint.commit)
        if wait:
            self._settle()

    def committed(self, seconds: float) -> None:
        """The checkpoint's transaction committed (on the commit thread), in `seconds`."""
        now = time.monotonic()
        if now - self._last_commit <= _BUSY_EPOCH_S:  # not the first commit, nor an idle task's refresh
            metrics.EPOCH_SECONDS.observe(now - self._last_commit)
        metrics.COMMIT_SECONDS.observe(seconds)
        self._last_commit = self._last_progress = now
        self.commits += 1
        self._refresh_taken = False
        meter.commits += 1
        meter.commit_seconds += seconds
        if not self.committed_once:
            self.committed_once = True
            self.log.info("first commit", seconds_since_open=round(time.perf_counter() - self.opened_at, 3),
                          commit_ms=round(1000 * seconds, 1), records=self.processed)

    def unhealthy(self, bound_s: float) -> str | None:
        """Why this task is not keeping up, or None: work processed (or waiting for a commit) and
        nothing committed for `bound_s` seconds."""
        busy = self._dirty or self._pending or (self._committing is not None and not self._committing.done())
        waited = time.monotonic() - self._last_progress
        if busy and waited > bound_s:
            return f"nothing committed for {waited:.0f} s with work waiting"
        return None

    def lag(self) -> dict[str, int]:
        """Per input topic: records Kafka has that this task has not processed yet (from the consumer's
        cached high watermarks: no request to the broker)."""
        if self.consumer is None:
            return {}
        lags = {}
        for tp in self.inputs:
            _low, high = self.consumer.get_watermark_offsets(tp, cached=True)
            position = self.positions.get((tp.topic, tp.partition), -1)
            if high >= 0 and position >= 0:
                lags[tp.topic] = max(0, high - position)
        return lags

    def offsets_for_transaction(self, offsets: list[TopicPartition]) -> list[TopicPartition]:
        """The input offsets this commit sends to its transaction: all of them (the chaos suite's
        deliberately broken build overrides this, see `tests/chaos/broken_build.py`)."""
        return offsets

    def refresh_due(self) -> bool:
        """An idle task commits its positions now and then, so Kafka never expires them."""
        return time.monotonic() - self._last_commit >= self.settings.engine.offsets_refresh_ms / 1000

    def take_refresh(self) -> bool:
        """True once per due refresh: the source then hands the sink one empty batch, so Bytewax
        calls the sink's `snapshot()` (and so `commit`) at the epoch's close even for an idle task."""
        if self._refresh_taken or not self.refresh_due():
            return False
        self._refresh_taken = True
        return True

    def purge_internal(self, offsets: list[TopicPartition]) -> None:
        """Delete the records of internal topics (a repartition: the credits) this task has committed
        as consumed, now and then: the topics keep them until then."""
        if (self.topology is None or not self._internal
                or time.monotonic() - self._last_purge < self.settings.engine.credits_purge_interval_ms / 1000):
            return
        self._last_purge = time.monotonic()
        consumed = [tp for tp in offsets if tp.topic in self._internal and tp.offset > 0]
        if consumed:
            self.topology.delete_consumed(consumed, self.log)

    def _settle(self) -> None:
        """Wait for the in-flight commit, re-raising its failure.

        A commit's sends and its transaction commit each have a deadline (`engine.commit_timeout_ms`);
        a commit not back `STUCK_GRACE_S` after both passed is stuck inside the Kafka client (librdkafka's
        `send_offsets_to_transaction` can, while the group coordinator is down: librdkafka
        issues 5456 and 5511). Nothing can unstick that thread, so the process ends
        (`shutdown.abandon`) and restarts, and the task's next owner fences the transaction.
        """
        if self._committing is not None:
            committing, self._committing = self._committing, None
            try:
                committing.result(timeout=2 * self.settings.engine.commit_timeout_ms / 1000 + STUCK_GRACE_S)
            except FutureTimeout:
                self._abandon(f"task {self.task_id}: a commit did not return {STUCK_GRACE_S:.0f} s after its "
                              f"deadlines (engine.commit_timeout_ms = {self.settings.engine.commit_timeout_ms}): "
                              f"stuck in the Kafka client")

    _abandon = staticmethod(shutdown.abandon)  # tests replace it: the real one ends the process

    def check(self) -> None:
        """Raise now if the last commit failed (the source calls this while the task is idle)."""
        if self._committing is not None and self._committing.done():
            self._settle()

    def close(self) -> bool:
        """A graceful stop: wait for the commit in flight, abort uncommitted work, release the clients.

        Returns whether everything the task processed was committed. Never raises: the process
        is stopping, and whatever is left open the next owner's `init_transactions` resolves.
        """
        committed = True
        try:
            self._settle()
        except Exception as error:  # noqa: BLE001 - reported, then the clients are released anyway
            committed = False
            self.log.warning("last commit failed while stopping", error=str(error))
        if self.producer is not None:
            if self._dirty or self.producer.in_transaction or self._pending:
                committed = False
                self.producer.abort()
            self.producer.close()
        if self.consumer is not None:
            self.consumer.close()
        for store in self.stores.values():
            store.close()
        self.log.info("task closed", committed=committed, records=self.processed)
        return committed


_topic_of = operator.methodcaller("topic")  # a C call per record: counting inputs costs ~nothing
# a gap between two commits longer than this is an idle task's refresh, not an epoch
_BUSY_EPOCH_S = 60.0

# Commits of all tasks of the process run here, in parallel (librdkafka releases the GIL).
_commit_pool = ThreadPoolExecutor(max_workers=64, thread_name_prefix="commit")


class TaskRegistry:
    """The tasks opened in this process, shared by the task's source and sink partitions.

    Bytewax assigns source and sink partitions with the same deterministic function over the
    same partition names, so task p's source and sink live in the same process. Tasks open
    in parallel threads (fencing costs ~0.5 s each; librdkafka releases the GIL).
    """

    def __init__(self, settings: Settings, app: Application, tables: Mapping[str, Mapping[str, Any]] | None = None,
                 runtime: type[TaskRuntime] = TaskRuntime) -> None:
        self.settings = settings
        self.app = app
        self.runtime = runtime
        self._tables = tables
        self._pool = ThreadPoolExecutor(max_workers=settings.kafka.partitions, thread_name_prefix="open-task")
        self._opening: dict[str, Future[TaskRuntime]] = {}
        self._topology: Topology | None = None
        _registries.append(self)

    def topology(self) -> Topology:
        """The checked topics (partition counts, the changelog's id); checked once per process."""
        if self._topology is None:
            self._topology = check_topology(self.settings, self.app)
        return self._topology

    def tables(self) -> Mapping[str, Mapping[str, Any]]:
        """The application's global tables, loaded once per process before its first task opens."""
        if self._tables is None:
            self._tables = self.app.load_tables(self.settings)
        return self._tables

    def tables_loaded(self) -> bool:
        return self._tables is not None

    def opening(self, task_id: str) -> Future[TaskRuntime]:
        """Start opening `task_id` (once per process) and return its future."""
        if task_id not in self._opening:
            tables = self.tables()
            topology = self.topology()
            task = self.runtime(self.settings, task_id, tables, topology, app=self.app)
            self._opening[task_id] = self._pool.submit(task.open)
        return self._opening[task_id]

    def tasks(self) -> dict[str, TaskRuntime | BaseException | None]:
        """Every task this process owns: open (its runtime), failed (the error) or still opening (None)."""
        found: dict[str, TaskRuntime | BaseException | None] = {}
        for task_id, future in list(self._opening.items()):
            if not future.done():
                found[task_id] = None
            else:
                found[task_id] = future.exception() or future.result()
        return found

    def close(self) -> bool:
        """Close every task opened here (a graceful stop); whether all their work was committed."""
        committed = True
        for future in self._opening.values():
            if future.done() and future.exception() is None:
                committed = future.result().close() and committed
        self._opening.clear()
        return committed


_registries: list[TaskRegistry] = []


def registries() -> list[TaskRegistry]:
    """The task registries of this process (one per running dataflow), for metrics and health."""
    return list(_registries)


def close_all() -> bool:
    """Close the tasks of every registry of this process (at a graceful stop)."""
    committed = True
    while _registries:
        committed = _registries.pop().close() and committed
    return committed
