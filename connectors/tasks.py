"""A task: one partition p of `payments` (with partition p of the internal credits topic).

The task owns the state of the accounts whose key hashes to p, and commits, in ONE Kafka
transaction per epoch, everything it produced: its output records, one changelog record per
changed account, the credits it owes other tasks, and its input offsets. Kafka is the single
source of truth; local snapshots are only a cache (see `state/snapshots.py`).

Opening a task (`TaskRuntime.open`, numbered because the order is the correctness argument):
1. `init_transactions` with the task's stable `transactional.id`: every zombie of the task is
   fenced and its dangling transaction aborted (or completed), so offsets below are stable.
2. read the committed input offsets of the task's group (`read_committed`).
3. load the newest local snapshot at or below the changelog's committed end; discard newer ones.
4. replay the changelog tail after the snapshot (all of it without a snapshot).
Then the task's state equals the state of its last committed transaction, and its inputs
resume right after the last committed record: nothing is lost, nothing applied twice.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Mapping

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from connectors.transactions import TaskProducer, transactional_id
from operators.accounts import AccountState
from operators.task import InboundRecord, TaskProcessor
from paystream import clients, faults, logs
from paystream.settings import Settings
from paystream.wire import CustomerStatus
from state.changelog import changelog_records
from state.restore import restore_accounts, watermarks
from state.snapshots import SnapshotCache


def processor_type(settings: Settings) -> type:
    """The domain core a task runs: the payment engine, or the benchmark's simple workload."""
    if settings.engine.workload == "simple":
        from operators.simple import SimplePaymentsProcessor

        return SimplePaymentsProcessor
    if settings.engine.workload != "payments":
        raise ValueError(f"unknown engine.workload {settings.engine.workload!r}: use 'payments' or 'simple'")
    return TaskProcessor


def task_id_of(settings: Settings, partition: int) -> str:
    """Kafka Streams' naming: `{topic}-{partition}` of the command topic."""
    return f"{settings.topics.payments}-{partition}"


def task_ids(settings: Settings) -> list[str]:
    return [task_id_of(settings, p) for p in range(settings.kafka.partitions)]


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
    """One task in this process: its consumer, producer, accounts and processor."""

    def __init__(self, settings: Settings, task_id: str, customers: Mapping[str, CustomerStatus]) -> None:
        self.settings = settings
        self.task_id = task_id
        self.partition = partition_of_task(task_id)
        self.customers = customers
        self.log = logs.get("task", task=task_id)
        self.processor_type = processor_type(settings)
        self.accounts: dict[str, AccountState] = {}
        self.inputs = [
            TopicPartition(settings.topics.payments, self.partition),
            TopicPartition(settings.credits_topic, self.partition),
        ]
        self.next_offsets: dict[tuple[str, int], int] = {}
        self.changelog_end = 0
        self.epochs_since_snapshot = 0
        self.snapshots = SnapshotCache(settings.engine.snapshot_dir, f"{settings.engine.app_id}.{task_id}")
        self.consumer: Consumer | None = None
        self.producer: TaskProducer | None = None
        self.processor: TaskProcessor | None = None
        self.opened_in_seconds = 0.0
        self._committing: Future[None] | None = None
        self.polled = self.processed = 0  # records handed to the dataflow / through the core
        self.committed_once = False
        self.opened_at = time.perf_counter()
        self._pending: list = []

    # -- opening ------------------------------------------------------------------------

    def open(self) -> "TaskRuntime":
        """Fence, read committed offsets, restore state; see the module docstring for the order."""
        started = time.perf_counter()
        settings = self.settings
        self.consumer = Consumer(
            clients.consumer_config(
                settings,
                settings.consumer_group,
                **{"client.id": transactional_id(settings, self.task_id) + "-in", "fetch.min.bytes": 1,
                   "queued.max.messages.kbytes": 65536},
            )
        )
        self.producer = TaskProducer(settings, self.task_id, self.consumer.consumer_group_metadata())
        self.producer.init()  # 1. fence zombies
        consumer = self.consumer
        committed = clients.while_settling(lambda: consumer.committed(self.inputs, timeout=60))  # 2. committed offsets
        for tp in committed:
            if tp.error is not None:
                raise RuntimeError(f"task {self.task_id}: cannot read committed offset of {tp.topic}: {tp.error}")
        start = [TopicPartition(tp.topic, tp.partition, tp.offset if tp.offset >= 0 else OFFSET_BEGINNING)
                 for tp in committed]
        self._restore()  # 3 + 4
        self.processor = self.processor_type(settings, self.customers, self.accounts)
        self.consumer.assign(start)
        self.opened_in_seconds = time.perf_counter() - started
        self.opened_at = time.perf_counter()
        meter.start()
        self.log.info("task open", accounts=len(self.accounts), seconds=round(self.opened_in_seconds, 3),
                      resume={f"{tp.topic}": tp.offset for tp in committed})
        return self

    def _restore(self) -> None:
        changelog = TopicPartition(self.settings.changelog_topic, self.partition)
        assert self.consumer is not None
        _low, committed_end = watermarks(self.consumer, changelog)
        start = 0
        snapshot = self.snapshots.load(committed_end, self.processor_type.state_type)
        if snapshot is not None:
            self.accounts.update(snapshot.accounts)
            start = snapshot.changelog_offset
            self.log.info("snapshot loaded", accounts=len(self.accounts), changelog_offset=start,
                          kafka_end=committed_end)
        result = restore_accounts(self.settings, self.task_id, self.partition, start, self.accounts,
                                  self.processor_type.state_type)
        self.changelog_end = max(start, result.next_offset)

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
        return messages  # `Message` has the accessors the processors use: no copy per record

    def _without_errors(self, messages: list) -> list:
        kept = []
        for message in messages:
            error = message.error()
            if error is None:
                kept.append(message)
            elif error.code() != KafkaError._PARTITION_EOF:
                raise RuntimeError(f"task {self.task_id}: consume failed: {error}")
        return kept

    def process(self, records: list[InboundRecord]) -> None:
        """Run the domain core over `records`; their outputs join the task's next transaction.

        While the previous epoch's commit is still in flight (it runs on a commit thread),
        outputs wait in memory, so the worker never blocks on Kafka between epochs.
        """
        assert self.processor is not None and self.producer is not None
        if not records:
            return
        outbound = self.processor.process(records)
        meter.records += len(records)
        self.processed += len(records)
        # the last record of each input partition in the batch gives its next offset
        next_offsets, seen = self.next_offsets, set()
        for record in reversed(records):
            where = (record.topic(), record.partition())
            if where not in seen:
                seen.add(where)
                next_offsets[where] = record.offset() + 1
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

        1. wait for the previous epoch's commit; send the outputs that waited for it;
        2. changelog: one record per account changed since the last commit, encoded now;
        3. offsets: the next offset of every input partition read this epoch;
        4. on the commit thread: `send_offsets_to_transaction` + `commit_transaction`, so outputs,
           changelog and offsets become visible together or not at all; a failure is raised
           by the next `process`/`commit`/`check` call, which stops the worker;
        5. post-commit: a local snapshot, if one is due (a cache; it may be lost at any time).
        """
        assert self.processor is not None and self.producer is not None
        self._settle()
        if self._pending:
            self.producer.send(self._pending)
            self._pending = []
        if not self.next_offsets and not self.producer.in_transaction:
            return
        changed = self.processor.changed
        if changed:
            self.producer.send_to_partition(self.settings.changelog_topic, self.partition,
                                            changelog_records(self.accounts, changed))
            changed.clear()
        offsets = [TopicPartition(topic, partition, offset) for (topic, partition), offset in self.next_offsets.items()]
        self.next_offsets.clear()
        snapshot = None
        self.epochs_since_snapshot += 1
        if self.epochs_since_snapshot >= self.settings.engine.snapshot_every_epochs:
            snapshot = self.snapshots.encode_accounts(self.accounts)  # the state as of this commit
            self.epochs_since_snapshot = 0
        self._committing = _commit_pool.submit(self._commit_now, offsets, snapshot)
        if wait:
            self._settle()

    def _commit_now(self, offsets: list[TopicPartition], snapshot: bytes | None) -> None:
        assert self.producer is not None
        faults.maybe_die("before_commit")
        started = time.perf_counter()
        if self.settings.engine.unsafe_offsets_outside_transaction:
            assert self.consumer is not None
            self.consumer.commit(offsets=offsets, asynchronous=False)  # the bug the chaos test must catch
            offsets = []
        self.producer.commit(offsets)
        meter.commits += 1
        meter.commit_seconds += time.perf_counter() - started
        if not self.committed_once:
            self.committed_once = True
            self.log.info("first commit", seconds_since_open=round(time.perf_counter() - self.opened_at, 3),
                          commit_ms=round(1000 * (time.perf_counter() - started), 1), records=self.processed)
        faults.maybe_die("after_commit")
        if snapshot is not None:
            # only this task writes its changelog partition, so its end now is this commit's end
            assert self.consumer is not None
            changelog = TopicPartition(self.settings.changelog_topic, self.partition)
            self.changelog_end = watermarks(self.consumer, changelog)[1]
            self.snapshots.save_encoded(snapshot, self.changelog_end)

    def _settle(self) -> None:
        """Wait for the in-flight commit, re-raising its failure."""
        if self._committing is not None:
            committing, self._committing = self._committing, None
            committing.result()

    def check(self) -> None:
        """Raise now if the last commit failed (the source calls this while the task is idle)."""
        if self._committing is not None and self._committing.done():
            self._settle()


# Commits of all tasks of the process run here, in parallel (librdkafka releases the GIL).
_commit_pool = ThreadPoolExecutor(max_workers=64, thread_name_prefix="commit")


class TaskRegistry:
    """The tasks opened in this process, shared by the task's source and sink partitions.

    Bytewax assigns source and sink partitions with the same deterministic function over the
    same partition names, so task p's source and sink live in the same process. Tasks open
    in parallel threads (fencing costs ~0.5 s each; librdkafka releases the GIL).
    """

    def __init__(self, settings: Settings, customers: Mapping[str, CustomerStatus] | None = None) -> None:
        self.settings = settings
        self._customers = customers
        self._pool = ThreadPoolExecutor(max_workers=settings.kafka.partitions, thread_name_prefix="open-task")
        self._opening: dict[str, Future[TaskRuntime]] = {}

    def customers(self) -> Mapping[str, CustomerStatus]:
        if self._customers is None and self.settings.engine.workload == "simple":
            self._customers = {}  # the benchmark's workload has no reference data
        if self._customers is None:
            from state.customers import global_table

            self._customers = global_table(self.settings)
        return self._customers

    def opening(self, task_id: str) -> Future[TaskRuntime]:
        """Start opening `task_id` (once per process) and return its future."""
        if task_id not in self._opening:
            customers = self.customers()
            self._opening[task_id] = self._pool.submit(TaskRuntime(self.settings, task_id, customers).open)
        return self._opening[task_id]
