"""Local snapshots of a task's changelog: a cache that shortens recovery, never the truth.

A snapshot is the changelog partition compacted up to an offset: the latest value of every key
(`records`: the account records, a large account's pages, the task's input positions), exactly
as the changelog holds them, and the offset it reflects (`changelog_offset`: every changelog
record below it is folded in). A restore folds the changelog's tail on top and decodes the
result once (`state.restore`), so a snapshot needs no encoding of its own: the task keeps the
image up to date from the records it commits and writes a copy of it on the commit thread,
never encoding accounts on the worker thread.

It is written only after the transaction that produced that changelog offset committed (step 6
of `TaskRuntime.commit`), so it can never be ahead of Kafka unless Kafka lost data or the topics
were recreated: then it is discarded (compare Kafka Streams'
`ProcessorStateManager.initializeStoreOffsetsFromCheckpoint`).

A snapshot file carries a format version (`FORMAT_VERSION`: the file's layout; its values are
changelog records, each with its own changelog format version) and the identity of the
changelog topic it was taken from (`identity`, e.g. the topic's id: a topic deleted and
recreated under the same name has another). A snapshot of another format or another topic is
discarded, with a log line, and never loaded.

>>> import tempfile
>>> logs.configure()  # info and above
>>> cache = SnapshotCache(tempfile.mkdtemp(), "app.payments-0", identity="topic-id")
>>> _ = cache.save({b"A": b"state of A"}, changelog_offset=42)
>>> loaded = cache.load(committed_changelog_end=100)
>>> loaded.records, loaded.changelog_offset
({b'A': b'state of A'}, 42)
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Final

import msgspec

from paystream import logs

# 1: accounts as `operators.accounts.AccountState`, with `format` and `identity`.
# 2: the changelog's latest records (key -> value bytes) instead of decoded accounts.
# (bump it whenever the file's layout changes; the values carry the changelog's own version)
FORMAT_VERSION: Final = 2


class Snapshot(msgspec.Struct, gc=False):
    task_id: str
    changelog_offset: int
    records: dict[bytes, bytes]
    identity: str = ""


class _Header(msgspec.Struct, gc=False):
    task_id: str
    changelog_offset: int
    records: msgspec.Raw
    format: int = 0  # files written before format versions have none
    identity: str = ""


_encoder = msgspec.msgpack.Encoder()
_header = msgspec.msgpack.Decoder(_Header)
_records = msgspec.msgpack.Decoder(dict[bytes, bytes])


class SnapshotCache:
    """One task's snapshot files: `{task_id}.{changelog_offset}.snapshot`, newest kept.

    `identity`: the changelog topic's identity (its topic id); only snapshots taken from it load.
    """

    def __init__(self, directory: str | Path, task_id: str, keep: int = 2, identity: str = "",
                 max_age_ms: int | None = None) -> None:
        self.directory = Path(directory)
        self.task_id = task_id
        self.keep = keep
        self.identity = identity
        self.max_age_ms = max_age_ms  # older snapshots are not trusted (see `engine.local_state_max_age_ms`)
        self._log = logs.get("snapshots", task=task_id)

    def _files(self) -> list[tuple[int, Path]]:
        if not self.directory.is_dir():
            return []
        found = []
        for path in self.directory.glob(f"{self.task_id}.*.snapshot"):
            try:
                found.append((int(path.name.split(".")[-2]), path))
            except ValueError:
                continue
        return sorted(found)

    def save(self, records: dict[bytes, bytes], changelog_offset: int) -> Path:
        """Write `records` (no other thread may change them) atomically, temp file + rename, and
        drop older snapshots beyond `keep`."""
        self.directory.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        path = self.directory / f"{self.task_id}.{changelog_offset}.snapshot"
        temporary = path.with_suffix(".tmp")
        encoded = _encoder.encode(_Header(self.task_id, changelog_offset, msgspec.Raw(_encoder.encode(records)),
                                          FORMAT_VERSION, self.identity))
        with open(temporary, "wb") as file:
            file.write(encoded)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
        for _, old in self._files()[: -self.keep]:
            old.unlink(missing_ok=True)
        self._log.debug("snapshot written", bytes=len(encoded), records=len(records), changelog_offset=changelog_offset,
                        seconds=round(time.perf_counter() - started, 3))
        return path

    def load(self, committed_changelog_end: int) -> Snapshot | None:
        """The newest snapshot at or below Kafka's committed changelog end; newer ones are discarded."""
        for offset, path in reversed(self._files()):
            if offset > committed_changelog_end:
                self._log.warning("snapshot ahead of Kafka discarded", path=path.name,
                                  kafka_end=committed_changelog_end)
                path.unlink(missing_ok=True)
                continue
            try:
                age_ms = (time.time() - path.stat().st_mtime) * 1000
                if self.max_age_ms is not None and age_ms > self.max_age_ms:
                    self._log.warning("snapshot too old to trust: the changelog may have dropped tombstones since",
                                      path=path.name, age_s=int(age_ms / 1000), max_age_s=self.max_age_ms // 1000)
                    path.unlink(missing_ok=True)
                    continue
                header = _header.decode(path.read_bytes())
                if header.format != FORMAT_VERSION or header.identity != self.identity:
                    self._log.warning("snapshot of another format or changelog topic discarded", path=path.name,
                                      format=header.format, expected_format=FORMAT_VERSION,
                                      identity=header.identity, expected_identity=self.identity)
                    path.unlink(missing_ok=True)
                    continue
                snapshot = Snapshot(header.task_id, header.changelog_offset, _records.decode(header.records),
                                    header.identity)
            except (OSError, msgspec.DecodeError) as error:
                self._log.warning("corrupt snapshot discarded", path=path.name, error=str(error))
                path.unlink(missing_ok=True)
                continue
            return snapshot
        return None
