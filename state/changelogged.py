"""One named store of one task, with everything that makes it durable: its changelog partition,
its local snapshots (or its database on disk), and its restore.

The task's checkpoint (`connectors.checkpoint`) drives it through each commit:
`prepare` on the worker thread (the changed keys encoded as changelog records, the changelog
image updated, a snapshot's copy taken when one is due), `label` and the changelog records'
send on the commit thread, inside the transaction, and `after_commit` once the transaction
committed (the disk store's write batch, the snapshot file). `restore` brings the store to the
state of the task's last committed transaction when the task opens.

Kafka is the truth: the snapshot files and the database are caches, labelled with the
changelog offset they reflect and trusted only below Kafka's committed end, only for the same
changelog topic (its id), and only while young (`engine.local_state_max_age_ms`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition

from paystream import logs
from paystream.settings import Settings
from state import codec as codec_module
from state.codec import Codec
from state.disk import DiskStore
from state.restore import restore_store, watermarks
from state.snapshots import SnapshotCache
from state.store import Store

Records = list[tuple[bytes, bytes | None]]


class ChangeloggedStore:
    """A task's store `name`, changelogged to partition `partition` of `topic` (see the module docstring).

    `identity`: the changelog topic's id (local state of another topic never loads); `backend`:
    `memory` or `disk`.
    """

    def __init__(self, settings: Settings, name: str, value_type: type, codec: Codec | None, *, backend: str,
                 task_id: str, partition: int, topic: str, identity: str = "") -> None:
        engine = settings.engine
        self.settings = settings
        self.name = name
        self.task_id = task_id
        self.changelog = TopicPartition(topic, partition)
        local_name = f"{engine.app_id}.{task_id}.{name}"
        self.store: Store[Any]
        self.disk: DiskStore | None = None
        if backend == "disk":
            self.disk = DiskStore(name, value_type, Path(engine.snapshot_dir) / f"{local_name}.store", identity,
                                  engine.store_cache_keys, engine.local_state_max_age_ms, codec=codec)
            self.store = self.disk
        else:
            self.store = Store(name, value_type, codec=codec)
        self.snapshots = SnapshotCache(engine.snapshot_dir, local_name, identity=identity,
                                       max_age_ms=engine.local_state_max_age_ms)
        self.image: dict[bytes, bytes] = {}  # the changelog's latest value per key: what a snapshot writes
        self.changelog_end = 0  # the changelog offset the local state (snapshot or database) reflects
        self.restored_records = 0  # changelog records read when the task opened
        self.log = logs.get("store", task=task_id, store=name)

    # -- opening ------------------------------------------------------------------------

    def restore(self, consumer: Consumer, own_key: bytes) -> bytes | None:
        """Bring the store to the changelog's committed end; returns the latest value of the task's
        own record `own_key` (a `META_PREFIX` key, e.g. its input positions; None if it has none)."""
        settings = self.settings
        _low, committed_end = watermarks(consumer, self.changelog)
        codec_module.configure(settings.engine.changelog_record_warn_bytes)
        topic, partition = self.changelog.topic, self.changelog.partition
        if self.disk is not None:  # the database is the snapshot: bring it up to Kafka's end
            self.restored_records, self.changelog_end = self.disk.restore(
                settings, topic, self.task_id, partition, committed_end)
            return self.disk.meta(own_key)
        start = 0
        snapshot = self.snapshots.load(committed_end)
        if snapshot is not None:
            start = snapshot.changelog_offset
            self.log.info("snapshot loaded", records=len(snapshot.records), changelog_offset=start,
                          kafka_end=committed_end)
        result = restore_store(settings, topic, self.task_id, partition, start, self.store.data, self.store.codec,
                               snapshot.records if snapshot is not None else None)
        self.image = result.image
        self.changelog_end = max(start, result.next_offset)
        self.restored_records = result.records
        return result.meta.get(own_key)

    # -- committing ---------------------------------------------------------------------

    def prepare(self, extra: Records, snapshot_due: bool) -> tuple[Records, dict[bytes, bytes] | None]:
        """On the worker thread, at the commit: the changelog records of the keys changed since the
        last commit (and `extra`, the task's own records), and a copy of the changelog image for a
        snapshot if one is due (the state as of this commit; the commit thread encodes it)."""
        store = self.store
        changed = store.changed
        if self.disk is not None:
            self.disk.evict()  # the previous commit's records are in the database: it has settled
        records = store.codec.records(store.data, changed) if changed else []
        changed.clear()
        records += extra
        if self.disk is not None:
            return records, None
        image = self.image
        for key, value in records:
            if value is None:
                image.pop(key, None)
            else:
                image[key] = value
        return records, (dict(image) if snapshot_due else None)

    def label(self, consumer: Consumer) -> int | None:
        """On the commit thread, before this commit's records are sent: the changelog's end, or None
        if Kafka does not say within a few seconds (the snapshot is then skipped, never the commit
        delayed). A label never claims more than the local state holds, even with two owners."""
        try:
            return consumer.get_watermark_offsets(self.changelog, timeout=5, cached=False)[1]
        except KafkaException as error:
            self.log.info("snapshot skipped: the changelog's end is unknown", error=str(error))
            return None

    def after_commit(self, records: Records, snapshot: dict[bytes, bytes] | None, label: int | None) -> None:
        """Once the transaction committed: the database holds its records (and the new label, if
        one was read); a due snapshot is written (a cache: a failure only costs a longer restore)."""
        if self.disk is not None:
            self.disk.commit(records, label)
        if snapshot is not None and label is not None:
            try:
                self.snapshots.save(snapshot, label)
                self.changelog_end = label
            except OSError as error:
                self.log.warning("snapshot not written", error=str(error), changelog_offset=label)

    def wants_label(self, snapshot: dict[bytes, bytes] | None, snapshot_due: bool) -> bool:
        return snapshot is not None or (self.disk is not None and snapshot_due)

    def close(self) -> None:
        if self.disk is not None:
            self.disk.close()

