"""Local snapshots hold the changelog's latest records, carry a format version and the changelog
topic's identity; any other format or topic is never loaded."""

from __future__ import annotations

from pathlib import Path

import msgspec

from operators.account_codec import ACCOUNT_CODEC
from operators.accounts import AccountState
from state import snapshots
from state.codec import META_PREFIX
from state.snapshots import SnapshotCache


def image_of(accounts: dict[str, AccountState]) -> dict[bytes, bytes]:
    return {key: value for key, value in ACCOUNT_CODEC.records(accounts, list(accounts)) if value is not None}


def test_a_snapshot_loads_back_the_records_it_was_given_with_its_identity(tmp_path: Path) -> None:
    cache = SnapshotCache(tmp_path, "app.payments-0", identity="topic-id-1")
    accounts = {"A": AccountState(posted=5, payment_ids={"p1": 7})}
    records = {**image_of(accounts), META_PREFIX + b"positions": b"\x01"}
    cache.save(records, 42)
    loaded = cache.load(100)
    assert loaded is not None and loaded.records == records and loaded.changelog_offset == 42
    assert loaded.identity == "topic-id-1"
    restored: dict[str, AccountState] = {}
    ACCOUNT_CODEC.apply({key: value for key, value in loaded.records.items()
                         if not key.startswith(META_PREFIX)}, restored)
    assert restored == accounts


def test_only_the_newest_snapshots_are_kept(tmp_path: Path) -> None:
    cache = SnapshotCache(tmp_path, "app.payments-0", keep=2)
    for offset in (10, 20, 30):
        cache.save({b"A": str(offset).encode()}, offset)
    assert sorted(path.name for path in tmp_path.glob("*.snapshot")) == [
        "app.payments-0.20.snapshot", "app.payments-0.30.snapshot"]
    loaded = cache.load(25)  # the one at 30 is ahead of Kafka: discarded
    assert loaded is not None and loaded.records == {b"A": b"20"}
    assert not (tmp_path / "app.payments-0.30.snapshot").exists()


def test_a_snapshot_of_another_changelog_topic_is_discarded(tmp_path: Path) -> None:
    SnapshotCache(tmp_path, "app.payments-0", identity="topic-id-1").save(image_of({"A": AccountState(posted=5)}), 42)
    assert SnapshotCache(tmp_path, "app.payments-0", identity="topic-id-2").load(100) is None
    assert not list(tmp_path.glob("*.snapshot"))


def test_a_snapshot_of_another_format_version_is_discarded(tmp_path: Path) -> None:
    cache = SnapshotCache(tmp_path, "app.payments-0")
    cache.save(image_of({"A": AccountState(posted=5)}), 42)
    older = {"task_id": "app.payments-0", "changelog_offset": 50, "format": 1, "identity": "",  # decoded accounts
             "accounts": msgspec.Raw(msgspec.msgpack.encode({"A": AccountState(posted=6)}))}
    (tmp_path / "app.payments-0.50.snapshot").write_bytes(msgspec.msgpack.encode(older))
    loaded = cache.load(100)
    assert loaded is not None and loaded.changelog_offset == 42  # the format-1 one is skipped
    assert not (tmp_path / "app.payments-0.50.snapshot").exists()
    assert snapshots.FORMAT_VERSION == 2


def test_a_corrupt_snapshot_is_discarded_for_an_older_one(tmp_path: Path) -> None:
    cache = SnapshotCache(tmp_path, "app.payments-0", keep=5)
    cache.save({b"A": b"x"}, 42)
    (tmp_path / "app.payments-0.50.snapshot").write_bytes(b"\xc1 not msgpack")
    loaded = cache.load(100)
    assert loaded is not None and loaded.changelog_offset == 42


def test_a_snapshot_older_than_the_changelogs_tombstones_is_not_trusted(tmp_path: Path) -> None:
    import os
    import time

    cache = SnapshotCache(tmp_path, "app.payments-0", max_age_ms=3_600_000)
    old = cache.save({b"A": b"x"}, 42)
    day_ago = time.time() - 86_400
    os.utime(old, (day_ago, day_ago))
    assert cache.load(100) is None and not old.exists()
    cache.save({b"A": b"y"}, 50)
    loaded = cache.load(100)
    assert loaded is not None and loaded.changelog_offset == 50
