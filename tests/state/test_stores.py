"""The in-memory and the disk-backed store keep the same promises (the broker-backed recovery
tests run the runtime over both: tests/connectors/test_recovery.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from operators.account_codec import ACCOUNT_CODEC, PAGE_SEPARATOR
from operators.accounts import AccountState
from state.codec import StructCodec
from state.disk import DiskStore
from state.store import Store

RECORD = StructCodec(AccountState)  # an account's own record (its pages not included)


@pytest.fixture(params=["memory", "disk"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "memory":
        yield Store("accounts", AccountState, codec=ACCOUNT_CODEC)
        return
    disk = DiskStore("accounts", AccountState, tmp_path / "task.store", cache_keys=2, codec=ACCOUNT_CODEC)
    yield disk
    disk.close()


def commit(store: Any) -> list[tuple[bytes, bytes | None]]:
    """What the runtime does at a commit: the changed keys' changelog records, then (on disk) the write."""
    if isinstance(store, DiskStore):
        store.evict()
    records = store.codec.records(store.data, store.changed)
    store.changed.clear()
    if isinstance(store, DiskStore):
        store.commit(records, None)
    return records


def test_put_get_touch_and_delete_mark_what_the_next_commit_writes(store: Any) -> None:
    store.put("A", AccountState(posted=5))
    store.put("B", AccountState(posted=7))
    assert store.changed == {"A", "B"} and store.get("A").posted == 5 and store.get("Z") is None
    assert [key for key, _ in commit(store)] in ([b"A", b"B"], [b"B", b"A"])
    store.get("A").posted += 1  # changed in place
    store.touch("A")
    store.delete("B")
    written = dict(commit(store))
    assert written[b"B"] is None and RECORD.decode(written[b"A"]).posted == 6
    assert store.contents() == {"A": AccountState(posted=6)} and "B" not in store


def test_a_disk_store_reads_back_what_was_committed_after_the_cache_forgets_it(tmp_path: Path) -> None:
    path = tmp_path / "task.store"
    store = DiskStore("accounts", AccountState, path, cache_keys=2, codec=ACCOUNT_CODEC)
    for n in range(10):
        store.put(f"ACC{n}", AccountState(posted=n))
        commit(store)
    assert len(store.data) <= 3  # bounded: the last commit's keys stay until the next one settles
    assert store.get("ACC3").posted == 3 and "ACC9" in store and store.get("NOPE") is None
    store.get("ACC3").posted += 100
    store.touch("ACC3")
    commit(store)
    store.close()
    reopened = DiskStore("accounts", AccountState, path, codec=ACCOUNT_CODEC)
    assert reopened.get("ACC3").posted == 103
    assert reopened.contents() == {f"ACC{n}": AccountState(posted=n + (100 if n == 3 else 0)) for n in range(10)}
    reopened.close()


def test_a_large_accounts_pages_come_back_from_disk(tmp_path: Path) -> None:
    from operators.accounts import remember_payment

    store = DiskStore("accounts", AccountState, tmp_path / "task.store", cache_keys=1, codec=ACCOUNT_CODEC)
    account = AccountState()
    for n in range(4_000):  # enough remembered ids to pass the record's spill size
        remember_payment(account, f"payment-{n:06d}", 1_000 + n, horizon_ms=10**9)
    store.put("M", account)
    records = commit(store)
    assert any(PAGE_SEPARATOR in key for key, _ in records)  # sealed into pages
    store.put("other", AccountState())
    commit(store)
    commit(store)  # "M" evicted: the next read decodes its record and its pages
    assert dict.get(store.data, "M") is None
    assert store.get("M") == account
    assert store.contents() == {"M": account, "other": AccountState()}  # pages are no values of their own
    store.close()


def test_a_disk_store_of_plain_values_uses_the_default_codec(tmp_path: Path) -> None:
    store = DiskStore("counts", int, tmp_path / "task.store", cache_keys=1)
    assert isinstance(store.codec, StructCodec)
    for n in range(5):
        store.put(f"k{n}", n)
        commit(store)
    store.delete("k0")
    commit(store)
    commit(store)
    assert store.get("k1") == 1 and store.get("k0") is None
    assert store.contents() == {f"k{n}": n for n in range(1, 5)}
    store.close()


def test_a_second_owner_of_a_held_database_gets_a_private_copy(tmp_path: Path) -> None:
    first = DiskStore("accounts", AccountState, tmp_path / "task.store")
    second = DiskStore("accounts", AccountState, tmp_path / "task.store")
    assert second.path != first.path and second.path.name.endswith(".private")
    first.close()
    second.close()


def test_a_disk_store_trusts_its_label_only_for_its_changelog_below_kafkas_end_and_while_young(
        tmp_path: Path) -> None:
    hour = 3_600_000
    store = DiskStore("accounts", AccountState, tmp_path / "task.store", identity="topic-1", max_age_ms=hour)
    assert store.trusted_label(committed_end=0, now_ms=0) == 0  # a new database: made for this changelog
    store.put("A", AccountState(posted=5))
    store.commit(commit_records(store), label=40)
    now = int(__import__("time").time() * 1000)
    assert store.trusted_label(committed_end=100, now_ms=now) == 40
    assert store.trusted_label(committed_end=100, now_ms=now + 2 * hour) == 0  # too old: wiped
    assert store.contents() == {}
    store.commit([(b"A", RECORD.encode(AccountState(posted=5)))], label=40)
    assert store.trusted_label(committed_end=30, now_ms=now) == 0  # claims more than Kafka has: wiped
    store.close()
    other = DiskStore("accounts", AccountState, tmp_path / "task.store", identity="topic-2")
    assert other.trusted_label(committed_end=100, now_ms=now) == 0  # topic-1's database: wiped, now topic-2's
    other.commit([], label=10)
    other.close()
    again = DiskStore("accounts", AccountState, tmp_path / "task.store", identity="topic-1")
    assert again.trusted_label(committed_end=100, now_ms=now) == 0  # another changelog topic's database
    again.close()


def commit_records(store: DiskStore) -> list[tuple[bytes, bytes | None]]:
    records = store.codec.records(store.data, store.changed)
    store.changed.clear()
    return records
