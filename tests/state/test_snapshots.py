"""Local snapshots carry a format version and the changelog topic's identity; any other is never loaded."""

from __future__ import annotations

from pathlib import Path

import msgspec

from operators.accounts import AccountState
from state import snapshots
from state.snapshots import SnapshotCache


def test_a_snapshot_loads_back_with_its_identity(tmp_path: Path) -> None:
    cache = SnapshotCache(tmp_path, "app.payments-0", identity="topic-id-1")
    accounts = {"A": AccountState(posted=5, payment_ids={"p1": 7})}
    cache.save(accounts, 42)
    loaded = cache.load(100)
    assert loaded is not None and loaded.accounts == accounts and loaded.changelog_offset == 42
    assert loaded.identity == "topic-id-1"


def test_a_snapshot_of_another_changelog_topic_is_discarded(tmp_path: Path) -> None:
    SnapshotCache(tmp_path, "app.payments-0", identity="topic-id-1").save({"A": AccountState(posted=5)}, 42)
    assert SnapshotCache(tmp_path, "app.payments-0", identity="topic-id-2").load(100) is None
    assert not list(tmp_path.glob("*.snapshot"))


def test_a_snapshot_of_another_format_version_is_discarded(tmp_path: Path) -> None:
    cache = SnapshotCache(tmp_path, "app.payments-0")
    cache.save({"A": AccountState(posted=5)}, 42)
    old = {"task_id": "app.payments-0", "changelog_offset": 50,  # written before format versions
           "accounts": msgspec.msgpack.encode({"A": AccountState(posted=6)})}
    (tmp_path / "app.payments-0.50.snapshot").write_bytes(msgspec.msgpack.encode(
        {**old, "accounts": msgspec.Raw(old["accounts"])}))  # type: ignore[arg-type]
    loaded = cache.load(100)
    assert loaded is not None and loaded.changelog_offset == 42  # the unversioned one is skipped
    assert not (tmp_path / "app.payments-0.50.snapshot").exists()
    assert snapshots.FORMAT_VERSION == 1
