"""A task's checkpoint: one epoch's work made durable in one Kafka transaction, or not at all.

As Quix Streams' checkpoint and Kafka Streams' task commit: a `Checkpoint` is made at the
epoch's close on the worker thread (`prepare`), committed on a commit thread (`commit`), and
finished once Kafka has acknowledged it (`after_commit`):

1. prepare: each store's changed keys encoded as changelog records (the first store's also
   carry the task's input positions, so a restore knows them whatever the group keeps), the
   changelog images updated and, if a snapshot is due, copied (the state as of this commit);
   the next offset of every input partition the task owns, read this epoch or not;
2. commit: each store's label (its changelog's end, read before this commit's changelog
   records are sent); the changelog records; `send_offsets_to_transaction` and
   `commit_transaction`: the outputs (sent while the epoch ran), the changelog records and the
   input offsets become visible together;
3. after-commit: the disk stores' write batches, the snapshot files, the purge of internal
   topics' records every task has consumed.

Positions are stored as one changelog value `[[topic, partition, next_offset], ...]`:

>>> decode_positions(encode_positions({("payments", 3): 42}))
{('payments', 3): 42}
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

import msgspec
from confluent_kafka import TopicPartition

from paystream import faults
from state.changelogged import ChangeloggedStore, Records
from state.codec import META_PREFIX

if TYPE_CHECKING:
    from connectors.tasks import TaskRuntime

# The changelog record that holds the task's input positions, written in every transaction
# (a key no stored value can have: store keys are UTF-8, which never holds 0xFF).
POSITIONS_KEY = META_PREFIX + b"positions"
_positions_type = list[tuple[str, int, int]]


def encode_positions(positions: Mapping[tuple[str, int], int]) -> bytes:
    """The input positions as one changelog value: `[[topic, partition, next_offset], ...]`."""
    return msgspec.msgpack.encode(sorted((topic, partition, offset)
                                         for (topic, partition), offset in positions.items()))


def decode_positions(value: bytes) -> dict[tuple[str, int], int]:
    return {(topic, partition): offset
            for topic, partition, offset in msgspec.msgpack.decode(value, type=_positions_type)}


class Checkpoint:
    """One commit of `task` (see the module docstring); made on the worker thread."""

    def __init__(self, task: TaskRuntime, snapshot_due: bool) -> None:
        self.task = task
        positions = task.positions
        extra: Records = ([(POSITIONS_KEY, encode_positions(positions))]
                          if positions and task.records_positions else [])
        self.parts: list[tuple[ChangeloggedStore, Records, dict[bytes, bytes] | None, bool]] = []
        for store in task.stores.values():
            records, snapshot = store.prepare(extra, snapshot_due)
            extra = []
            self.parts.append((store, records, snapshot, store.wants_label(snapshot, snapshot_due)))
        self.offsets = [TopicPartition(topic, partition, offset) for (topic, partition), offset in positions.items()]

    def commit(self) -> None:
        """On the commit thread: the labels, the changelog records, the transaction's commit, then
        `after_commit`. A failure propagates to the task's next `process`/`commit`/`check`."""
        task = self.task
        assert task.producer is not None and task.consumer is not None
        consumer, producer = task.consumer, task.producer
        labels = [store.label(consumer) if wants else None for store, _, _, wants in self.parts]
        for store, records, _, _ in self.parts:
            if records:
                producer.send_to_partition(store.changelog.topic, store.changelog.partition, records)
        faults.maybe_die("before_commit")
        started = time.perf_counter()
        producer.commit(task.offsets_for_transaction(self.offsets))
        task.committed(time.perf_counter() - started)
        faults.maybe_die("after_commit")
        self.after_commit(labels)

    def after_commit(self, labels: list[int | None]) -> None:
        for (store, records, snapshot, _), label in zip(self.parts, labels, strict=True):
            store.after_commit(records, snapshot, label)
        self.task.purge_internal(self.offsets)
