"""A task's store on local disk (RocksDB, through `rocksdict`), for state larger than memory.

`engine.store = "disk"`. The database holds the task's changelog compacted: the latest record of
every key, the same bytes the changelog partition holds (the records the store's codec wrote,
e.g. account records and a large account's pages, and the task's input positions), and the
changelog offset it reflects (`label`). The store's `data` is a cache of decoded values: a value
not in it is read from the database (its record and the records it needs with it, the codec's
`companions`) and decoded when the processor first asks for it; values are evicted once the
cache holds more than `engine.store_cache_keys` (never a value changed in the epoch being
committed).

The database is written only after a transaction committed (`commit`, on the commit thread,
one atomic write batch per commit), so it never holds what Kafka does not. Its label is the
changelog's end read before the labelled commit's records were sent, and is renewed every
`engine.snapshot_every_epochs` commits: a label never claims more than the database holds, and
replaying the changelog from it on top of the database (latest record wins) gives exactly the
committed state, whatever commits came after the label. That replay is the restore: raw
records written in batches, nothing decoded (`restore`). A database of another changelog
topic, of another format, or labelled ahead of Kafka is wiped, as a snapshot would be.

Only one process may open a task's database (RocksDB locks it): a task opened while another
owner still holds it (two overlapping owners) restores into a private directory instead.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Final

from rocksdict import AccessType, Options, Rdict, WriteBatch

from paystream import logs
from paystream.settings import Settings
from state.codec import META_PREFIX, Codec
from state.restore import read_partition_to_end
from state.store import Store

# 1: the changelog's latest records as values (as the store's codec wrote them), the label below
FORMAT_VERSION: Final = 1
_LABEL = META_PREFIX + b"\x01store.label"
_LABEL_TIME = META_PREFIX + b"\x01store.label-time"  # wall-clock ms when the label was written
_IDENTITY = META_PREFIX + b"\x01store.identity"
_FORMAT = META_PREFIX + b"\x01store.format"


class _Cache(dict[str, Any]):
    """The decoded values in memory; a miss reads and decodes the value from the database."""

    def __init__(self, load: Callable[[str], Any]) -> None:
        super().__init__()
        self._load = load
        self.deleted: set[str] = set()  # deleted since their tombstone reached the database

    def __setitem__(self, key: str, value: Any) -> None:
        self.deleted.discard(key)
        dict.__setitem__(self, key, value)

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return dict.__getitem__(self, key)
        except KeyError:
            if key in self.deleted:
                return default
            value = self._load(key)
            if value is None:
                return default
            dict.__setitem__(self, key, value)
            return value

    def __missing__(self, key: str) -> Any:
        value = None if key in self.deleted else self._load(key)
        if value is None:
            raise KeyError(key)
        dict.__setitem__(self, key, value)
        return value

    def __contains__(self, key: object) -> bool:
        return dict.__contains__(self, key) or (isinstance(key, str) and self.get(key) is not None)


class DiskStore(Store[Any]):
    """A task's values in RocksDB, decoded on demand; see the module docstring."""

    __slots__ = ("path", "identity", "cache_keys", "max_age_ms", "_cache", "_db", "_options", "_log", "label")

    def __init__(self, name: str, value_type: type, path: str | Path, identity: str = "",
                 cache_keys: int = 100_000, max_age_ms: int | None = None, codec: Codec | None = None) -> None:
        super().__init__(name, value_type, codec=codec)
        self._cache = _Cache(self._load)
        self.data = self._cache
        self.path = Path(path)
        self.identity = identity
        self.cache_keys = cache_keys
        self.max_age_ms = max_age_ms  # an older label is not trusted (see `engine.local_state_max_age_ms`)
        self._log = logs.get("disk-store", store=name, path=self.path.name)
        self._options = Options(raw_mode=True)
        self._db = self._open()
        self.label = 0

    def _open(self) -> Rdict:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            return Rdict(str(self.path), self._options)
        except Exception as error:  # rocksdict raises a bare Exception; a held LOCK is the one we expect
            if "lock" not in str(error).lower():
                raise
            private = self.path.with_name(f"{self.path.name}.{uuid.uuid4().hex[:8]}.private")
            self._log.warning("store held by another owner: restoring into a private copy", error=str(error),
                              private=private.name)
            self.path = private
            return Rdict(str(self.path), self._options)

    # -- reading ------------------------------------------------------------------------------

    def _load(self, key: str) -> Any:
        """The value of `key` from the database (None if it has none), decoded with the records the
        codec needs with its own (its `companions`, e.g. a large account's pages)."""
        raw = key.encode()
        value = self._db.get(raw)
        if value is None:
            return None
        codec = self.codec
        latest: dict[bytes, bytes | None] = {raw: value}
        decoded: dict[str, Any] = {}
        codec.apply(latest, decoded)
        prefix = codec.companions(raw, decoded[key])
        if prefix is not None:
            latest.update(self._scan(prefix))
            decoded = {}
            codec.apply(latest, decoded)
        return decoded[key]

    def _scan(self, prefix: bytes) -> Iterable[tuple[bytes, bytes]]:
        cursor = self._db.iter()
        cursor.seek(prefix)
        while cursor.valid() and cursor.key().startswith(prefix):
            yield cursor.key(), cursor.value()
            cursor.next()

    def delete(self, key: str) -> None:
        dict.pop(self.data, key, None)
        self._cache.deleted.add(key)
        self.changed.add(key)

    def meta(self, key: bytes) -> bytes | None:
        """The task's own record `key` (e.g. its input positions) as the database holds it."""
        value = self._db.get(key)
        return value if isinstance(value, bytes) else None

    def contents(self) -> dict[str, Any]:
        """Every key and value: the database's, with the cache's changes on top (a scan: for tests)."""
        found: dict[str, Any] = {}
        owner = self.codec.owner
        cursor = self._db.iter()
        cursor.seek_to_first()
        while cursor.valid():
            key = cursor.key()
            if not key.startswith(META_PREFIX) and owner(key) == key:  # a value's own record
                name = key.decode()
                found[name] = dict.get(self.data, name) or self._load(name)
            cursor.next()
        found.update(dict.items(self.data))
        for name in self._cache.deleted:
            found.pop(name, None)
        return found

    # -- writing ------------------------------------------------------------------------------

    def commit(self, records: list[tuple[bytes, bytes | None]], label: int | None) -> None:
        """After a transaction committed: its changelog records, and the new label if one was read."""
        batch = WriteBatch(raw_mode=True)
        for key, value in records:
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        if label is not None:
            batch.put(_LABEL, str(label).encode())
            batch.put(_LABEL_TIME, str(int(time.time() * 1000)).encode())
        self._db.write(batch)
        if label is not None:
            self.label = label

    def evict(self) -> None:
        """Keep the cache bounded: drop every cached value not changed since the last commit
        (their latest records are in the database: the commit that wrote them has settled)."""
        changed = self.changed
        if self._cache.deleted:
            self._cache.deleted &= changed  # the others' tombstones are in the database
        if len(self.data) <= self.cache_keys:
            return
        for key in [key for key in self.data if key not in changed]:
            dict.__delitem__(self.data, key)

    # -- restoring ----------------------------------------------------------------------------

    def restore(self, settings: Settings, topic: str, task_id: str, partition: int,
                committed_end: int) -> tuple[int, int]:
        """Bring the database up to Kafka's committed changelog (partition `partition` of `topic`):
        `(records read, next offset)`."""
        started = time.perf_counter()
        label = self.trusted_label(committed_end, int(time.time() * 1000))
        read = 0

        def write(batch: list[Any]) -> None:
            nonlocal read
            self.commit([(message.key(), message.value()) for message in batch], None)
            read += len(batch)

        next_offset = read_partition_to_end(settings, topic, partition, label, write)
        self.commit([], max(label, next_offset))
        seconds = time.perf_counter() - started
        self._log.info("restored", task=task_id, records=read, from_offset=label, next_offset=next_offset,
                       seconds=round(seconds, 3), keys_per_s=int(read / seconds) if seconds > 0 else 0, store="disk")
        return read, max(label, next_offset)

    def trusted_label(self, committed_end: int, now_ms: int) -> int:
        """The label to replay the changelog from; the database is wiped (label 0) if it belongs to
        another changelog topic or format, claims more than Kafka's committed end, or was labelled
        longer ago than `max_age_ms` (the changelog's tombstones since may be compacted away)."""
        label = self._label()
        stamp = self._db.get(_LABEL_TIME)
        age_ms = now_ms - int(stamp) if isinstance(stamp, bytes) else 0
        reason = None
        if self._db.get(_IDENTITY) != self.identity.encode() or self._db.get(_FORMAT) != str(FORMAT_VERSION).encode():
            reason = "another changelog topic or format" if self._db.get(_IDENTITY) is not None else None
        elif label > committed_end:
            reason = "ahead of Kafka"
        elif label and self.max_age_ms is not None and age_ms > self.max_age_ms:
            reason = "labelled too long ago to trust"
        else:
            return label
        if reason is not None:
            self._log.warning(f"store wiped: {reason}", label=label, kafka_end=committed_end, age_s=age_ms // 1000)
        self._wipe()
        return 0

    def _label(self) -> int:
        value = self._db.get(_LABEL)
        return int(value) if isinstance(value, bytes) else 0

    def _wipe(self) -> None:
        self._db.close()
        shutil.rmtree(self.path, ignore_errors=True)
        self._db = Rdict(str(self.path), self._options)
        self._db.put(_IDENTITY, self.identity.encode())
        self._db.put(_FORMAT, str(FORMAT_VERSION).encode())
        dict.clear(self.data)

    def close(self) -> None:
        self._db.close()
        if self.path.name.endswith(".private"):  # a copy made because another owner held the database
            shutil.rmtree(self.path, ignore_errors=True)


def stored_label(path: str | Path) -> int:
    """The changelog offset a task's database is labelled with (0: none yet), read without taking
    its lock (the owner keeps running): for tools that wait for a task's first label."""
    try:
        db = Rdict(str(path), Options(raw_mode=True), access_type=AccessType.read_only())
    except Exception:  # noqa: BLE001 - not a database (yet): no label
        return 0
    try:
        value = db.get(_LABEL)
        return int(value) if isinstance(value, bytes) else 0
    finally:
        db.close()
