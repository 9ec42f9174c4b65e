"""Local snapshots of a task's accounts: a cache that shortens recovery, never the truth.

A snapshot records the changelog offset it reflects (`changelog_offset`: every changelog record
below it is folded in). It is written only after the transaction that produced that changelog
offset committed (step 4 of `TaskRuntime.commit`), so it can never be ahead of Kafka unless
Kafka lost data or the topics were recreated: then it is discarded (compare Kafka Streams'
`ProcessorStateManager.initializeStoreOffsetsFromCheckpoint`).

A snapshot file carries a format version (`FORMAT_VERSION`: the file's layout and the accounts'
encoding) and the identity of the changelog topic it was taken from (`identity`, e.g. the
topic's id: a topic deleted and recreated under the same name has another). A snapshot of
another format or another topic is discarded, with a log line, and never loaded.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Final

import msgspec

from operators.accounts import AccountState
from paystream import logs


# 1: `format` and `identity` added; accounts as `operators.accounts.AccountState` of changelog format 1
# (bump it whenever the file or the encoding of an account changes).
FORMAT_VERSION: Final = 1


class Snapshot(msgspec.Struct, gc=False):
    task_id: str
    changelog_offset: int
    accounts: dict[str, Any]
    identity: str = ""


class _EncodedSnapshot(msgspec.Struct, gc=False):
    task_id: str
    changelog_offset: int
    accounts: msgspec.Raw
    format: int = 0  # files written before format versions have none
    identity: str = ""


_encoder = msgspec.msgpack.Encoder()
_header = msgspec.msgpack.Decoder(_EncodedSnapshot)


class SnapshotCache:
    """One task's snapshot files: `{task_id}.{changelog_offset}.snapshot`, newest kept.

    `identity`: the changelog topic's identity (its topic id); only snapshots taken from it load.
    """

    def __init__(self, directory: str | Path, task_id: str, keep: int = 2, identity: str = "") -> None:
        self.directory = Path(directory)
        self.task_id = task_id
        self.keep = keep
        self.identity = identity
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

    @staticmethod
    def encode_accounts(accounts: dict[str, AccountState]) -> bytes:
        """Freeze the accounts as bytes now; `save_encoded` may write them later, from another thread."""
        return _encoder.encode(accounts)

    def save(self, accounts: dict[str, AccountState], changelog_offset: int) -> Path:
        return self.save_encoded(self.encode_accounts(accounts), changelog_offset)

    def save_encoded(self, accounts: bytes, changelog_offset: int) -> Path:
        """Write atomically (temp file + rename) and drop older snapshots beyond `keep`."""
        self.directory.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        path = self.directory / f"{self.task_id}.{changelog_offset}.snapshot"
        temporary = path.with_suffix(".tmp")
        with open(temporary, "wb") as file:
            file.write(_encoder.encode(_EncodedSnapshot(self.task_id, changelog_offset, msgspec.Raw(accounts),
                                                        FORMAT_VERSION, self.identity)))
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
        for _, old in self._files()[: -self.keep]:
            old.unlink(missing_ok=True)
        self._log.debug("snapshot written", bytes=len(accounts), changelog_offset=changelog_offset,
                        seconds=round(time.perf_counter() - started, 3))
        return path

    def load(self, committed_changelog_end: int, state_type: type = AccountState) -> Snapshot | None:
        """The newest snapshot at or below Kafka's committed changelog end; newer ones are discarded."""
        for offset, path in reversed(self._files()):
            if offset > committed_changelog_end:
                self._log.warning("snapshot ahead of Kafka discarded", path=path.name, kafka_end=committed_changelog_end)
                path.unlink(missing_ok=True)
                continue
            try:
                encoded = _header.decode(path.read_bytes())
                if encoded.format != FORMAT_VERSION or encoded.identity != self.identity:
                    self._log.warning("snapshot of another format or changelog topic discarded", path=path.name,
                                      format=encoded.format, expected_format=FORMAT_VERSION,
                                      identity=encoded.identity, expected_identity=self.identity)
                    path.unlink(missing_ok=True)
                    continue
                accounts = msgspec.msgpack.decode(encoded.accounts, type=dict[str, state_type])
                snapshot = Snapshot(encoded.task_id, encoded.changelog_offset, accounts, encoded.identity)
            except (OSError, msgspec.DecodeError) as error:
                self._log.warning("corrupt snapshot discarded", path=path.name, error=str(error))
                path.unlink(missing_ok=True)
                continue
            return snapshot
        return None
