"""The accounts codec: every changelog record bounded, and the latest record per key rebuilds exactly the live state.

Hazard (issue 10, #6): a busy account's whole state went into one changelog record per commit;
past the producer's maximum message size the produce failed on every replay and the cluster
crash-looped. Before the change, `test_a_busy_account_keeps_every_record_bounded_and_restores`
wrote one 2.3 MB record for the account (and 58 MB over its 50 commits).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from operators import account_codec
from operators.account_codec import ACCOUNT_CODEC, MAX_RECORD_BYTES
from operators.accounts import AccountState
from operators.task import TaskProcessor
from paystream.records import InboundRecord
from paystream.settings import Settings, load
from paystream.wire import CustomerStatus
from state import codec
from state.codec import FORMAT_VERSION, ChangelogFormatError
from tests.operators.test_properties import CUSTOMERS, commands, record

Records = list[tuple[bytes, bytes | None]]

BIG_SETTINGS = load(environ={}, kafka={"partitions": 1}, rules={"velocity": {"max_authorizations": 1_000_000_000}})
BIG_CUSTOMERS = {
    name: CustomerStatus(v=1, account=name, kyc="verified", blocked=False, single_limit=10**9, daily_limit=10**12,
                         home_country="FR", currency="EUR")
    for name in ("M", "N")
}
T0 = 1_700_000_000_000


def busy_account(commands: int, seed: int = 1, account: str = "M", start: int = T0) -> list[InboundRecord]:
    """One merchant's commands, ~2.5 s apart (100,000 span ~3 days, inside the 7-day horizon):
    deposits, authorizations captured, voided and refunded later (some long after), transfers,
    5% of them up to an hour late, and 1% re-sent."""
    rng = random.Random(seed)
    ts = start
    open_auths: list[str] = []
    captured: list[str] = []
    bodies: list[dict[str, Any]] = []
    for n in range(commands):
        ts += rng.randint(0, 5_000)
        if bodies and rng.random() < 0.01:
            bodies.append(rng.choice(bodies))  # a re-send
            continue
        base = {"v": 1, "payment_id": f"{account}-{n}", "account": account, "currency": "EUR",
                "ts": ts - (rng.randint(0, 3_600_000) if rng.random() < 0.05 else 0)}
        roll = rng.random()
        if roll < 0.2 or (not open_auths and roll < 0.5):
            body = {**base, "type": "deposit", "amount": rng.randint(1_000, 100_000)}
        elif roll < 0.5:
            body = {**base, "type": "authorize", "amount": rng.randint(10, 500), "country": "FR"}
            open_auths.append(base["payment_id"])
        elif roll < 0.7 and open_auths:
            auth = open_auths.pop(rng.randrange(len(open_auths)))
            captured.append(auth)
            body = {**base, "type": "capture", "amount": 5, "auth_id": auth}
        elif roll < 0.75 and open_auths:
            body = {**base, "type": "void", "amount": 1, "auth_id": open_auths.pop(rng.randrange(len(open_auths)))}
        elif roll < 0.8 and captured:
            body = {**base, "type": "refund", "amount": 1, "auth_id": rng.choice(captured)}
        else:
            body = {**base, "type": "transfer", "amount": rng.randint(1, 50), "to_account": "N"}
        bodies.append(body)
    return [InboundRecord("payments", 0, n, body["account"].encode(), msgspec.json.encode(body))
            for n, body in enumerate(bodies)]


def commits(processor: TaskProcessor, records: list[InboundRecord], every: int) -> Iterator[Records]:
    """Process `records`, `every` at a time, and yield the changelog records of each commit."""
    for start in range(0, len(records), every):
        produced = processor.process(records[start:start + every])
        credits = [InboundRecord(topic, 0, 0, key, value) for topic, key, value, _ in produced
                   if topic == processor.settings.credits_topic]
        processor.process(credits)
        written = ACCOUNT_CODEC.records(processor.accounts, processor.changed)
        processor.changed.clear()
        yield written


def restored(*batches: Records, into: dict[str, Any] | None = None) -> dict[str, Any]:
    """The accounts a restore rebuilds from these records (latest value per key), over `into`."""
    latest: dict[bytes, bytes | None] = {}
    for batch in batches:
        latest.update(batch)
    accounts = {} if into is None else into
    ACCOUNT_CODEC.apply(latest, accounts)
    return accounts


def copy(accounts: dict[str, AccountState]) -> dict[str, AccountState]:
    """A deep copy, as a local snapshot would load it."""
    return msgspec.msgpack.decode(msgspec.msgpack.encode(accounts), type=dict[str, AccountState])


def largest(records: Records) -> int:
    return max((len(key) + len(value) for key, value in records if value is not None), default=0)


# --- the hazard -----------------------------------------------------------------------------------


def test_a_busy_account_keeps_every_record_bounded_and_restores() -> None:
    """One account, 100,000 commands inside the horizon, a commit every 2,000: every changelog
    record stays <= 256 KiB, the restore rebuilds exactly the live state, and a restored task
    decides the rest exactly as the live one."""
    records = busy_account(100_000)
    live = TaskProcessor(BIG_SETTINGS, BIG_CUSTOMERS, {})
    written: list[Records] = []
    for batch in commits(live, records[:90_000], every=2_000):
        assert largest(batch) <= MAX_RECORD_BYTES
        written.append(batch)
    account = live.accounts["M"]
    assert account.spill is not None and len(account.spill.sealed_ids) > 50_000  # the horizon holds them all
    assert max(largest(batch) for batch in written) <= account_codec.SPILL_BYTES + account_codec.PAGE_BYTES
    again = restored(*written)
    assert again == live.accounts

    rest = records[90_000:]
    twin = TaskProcessor(BIG_SETTINGS, BIG_CUSTOMERS, again)
    assert twin.process(rest) == live.process(rest)
    assert twin.accounts == live.accounts
    assert live.counts[("decision", "approved")] > 90_000


def test_a_busy_account_restores_from_a_snapshot_and_the_changelog_tail() -> None:
    """The snapshot of commit k (labelled before commit k's records) plus every record from
    commit k on rebuilds the live state, and so does the snapshot plus only later records."""
    live = TaskProcessor(BIG_SETTINGS, BIG_CUSTOMERS, {})
    written = list(commits(live, busy_account(30_000, seed=2), every=1_500))
    truth = live.accounts
    replay = TaskProcessor(BIG_SETTINGS, BIG_CUSTOMERS, {})
    for k, batch in enumerate(commits(replay, busy_account(30_000, seed=2), every=1_500)):
        assert batch == written[k]
        if k in (3, 11, 17):
            snapshot = copy(replay.accounts)
            assert restored(*written[k:], into=copy(snapshot)) == truth  # the label read before commit k
            assert restored(*written[k + 1:], into=copy(snapshot)) == truth


def test_a_commit_that_adds_a_whole_horizon_at_once_is_cut_into_bounded_pages() -> None:
    """Bounded whatever one epoch brings: 100,000 commands of one account in one commit."""
    live = TaskProcessor(BIG_SETTINGS, BIG_CUSTOMERS, {})
    [batch] = list(commits(live, busy_account(100_000, seed=3), every=100_000))
    assert len(batch) > 20 and largest(batch) <= account_codec.PAGE_BYTES + 1_024
    assert restored(batch) == live.accounts


def test_an_ordinary_account_is_one_record_per_commit() -> None:
    task = TaskProcessor(BIG_SETTINGS, BIG_CUSTOMERS, {})
    [first, second] = list(commits(task, busy_account(200), every=100))
    assert [key for key, _ in first] == [b"M", b"N"] or [key for key, _ in first] == [b"N", b"M"]
    assert len(second) == 2 and task.accounts["M"].spill is None
    assert restored(first, second) == task.accounts


# --- the round trip, with pages small enough that every path is taken ------------------------------


@pytest.fixture
def tiny_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(account_codec, "SPILL_BYTES", 200)
    monkeypatch.setattr(account_codec, "PAGE_BYTES", 120)
    monkeypatch.setattr(account_codec, "WINDOW_PAGE_ENTRIES", 3)


SHORT_HORIZON = load(environ={}, kafka={"partitions": 1},
                     rules={"duplicate": {"horizon_ms": 1_200_000}, "daily_limit": {"window_ms": 600_000},
                            "velocity": {"window_ms": 300_000},
                            "event_time": {"max_skew_ms": 60_000, "max_lateness_ms": 600_000}})


@hypothesis_settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(commands(), st.lists(st.integers(1, 8), min_size=1, max_size=30), st.sampled_from([SHORT_HORIZON, None]))
def test_the_latest_record_per_key_rebuilds_the_state_after_every_commit(
        tiny_pages: None, stream: list[dict[str, Any]], cuts: list[int], settings: Settings | None) -> None:
    settings = settings or load(environ={}, kafka={"partitions": 1})
    records = [record(n, body) for n, body in enumerate(stream)]
    task = TaskProcessor(settings, CUSTOMERS, {})
    written: list[Records] = []
    snapshots: list[dict[str, AccountState]] = []
    at = 0
    for size in cuts * (len(records) // max(sum(cuts), 1) + 1):
        if at >= len(records):
            break
        snapshots.append(copy(task.accounts))
        written += list(commits(task, records[at:at + size], every=size))
        at += size
        assert restored(*written) == task.accounts
    for k, snapshot in enumerate(snapshots):
        assert restored(*written[k:], into=copy(snapshot)) == task.accounts
    again = TaskProcessor(settings, CUSTOMERS, restored(*written))
    more = [record(len(records) + n, body) for n, body in enumerate(stream)]  # re-sent: the same decisions
    assert again.process(more) == task.process(more)
    assert again.accounts == task.accounts


def test_pages_are_written_when_they_change_and_deleted_when_they_empty(tiny_pages: None) -> None:
    settings = load(environ={}, kafka={"partitions": 1},
                    rules={"duplicate": {"horizon_ms": 100_000}, "velocity": {"max_authorizations": 1_000},
                           "event_time": {"max_skew_ms": 1_000, "max_lateness_ms": 1_000}})
    task = TaskProcessor(settings, BIG_CUSTOMERS, {})
    bodies: list[dict[str, Any]] = [{"type": "deposit", "payment_id": "d0", "amount": 100_000, "ts": T0}]
    bodies += [{"type": "authorize", "payment_id": f"a{n}", "amount": 10, "ts": T0 + n, "country": "FR"}
               for n in range(20)]
    batch = [record(n, {"v": 1, "account": "M", "currency": "EUR", **body}) for n, body in enumerate(bodies)]
    [first] = list(commits(task, batch, every=len(batch)))
    spill = task.accounts["M"].spill
    assert spill is not None and spill.auth_pages and all(value is not None for _, value in first)
    held, page = next(iter(spill.sealed_auths.items()))
    capture = record(100, {"v": 1, "type": "capture", "payment_id": "c1", "account": "M", "currency": "EUR",
                           "amount": 10, "ts": T0 + 50, "auth_id": held})
    [second] = list(commits(task, [capture], every=1))
    assert account_codec.page_key(b"M", page) in dict(second)  # the sealed authorization changed
    assert len(second) <= 4
    # past the horizon: the captured authorization and the ids are forgotten, their pages deleted
    late = record(101, {"v": 1, "type": "deposit", "payment_id": "d1", "account": "M", "currency": "EUR",
                        "amount": 1, "ts": T0 + 300_000})
    [third] = list(commits(task, [late], every=1))
    deleted = {key for key, value in third if value is None}
    spill = task.accounts["M"].spill
    assert spill is not None and held not in spill.auth_pages.get(page, {}) and held not in spill.sealed_auths
    assert account_codec.page_key(b"M", page) in dict(third)  # rewritten without it, or deleted
    assert deleted and not spill.id_pages
    assert len(spill.sealed_auths) == 19  # the open authorizations stay
    assert restored(first, second, third) == task.accounts


# --- format versions, the task's own records, the alarm -----------------------------------------


def test_every_value_carries_the_format_version_and_another_version_is_refused() -> None:
    task = TaskProcessor(BIG_SETTINGS, BIG_CUSTOMERS, {})
    [batch] = list(commits(task, busy_account(50), every=50))
    for _, value in batch:
        assert msgspec.msgpack.decode(value)[0] == FORMAT_VERSION  # type: ignore[arg-type]
    key, value = batch[0]
    future = msgspec.msgpack.encode([FORMAT_VERSION + 1, msgspec.msgpack.decode(value)[1]])  # type: ignore[arg-type]
    with pytest.raises(ChangelogFormatError,
                       match=f"format version {FORMAT_VERSION + 1}; this build reads format version 1"):
        restored([(key, future)])
    unversioned = msgspec.msgpack.encode(msgspec.msgpack.decode(value)[1])  # type: ignore[arg-type]
    with pytest.raises(ChangelogFormatError, match="has no format version"):
        restored([(key, unversioned)])
    with pytest.raises(ChangelogFormatError, match="format version 7"):
        restored([(b"M\xff3", msgspec.msgpack.encode([7, [1, {}]]))], into={"M": AccountState()})


def test_the_tasks_own_records_are_no_account() -> None:
    task = TaskProcessor(BIG_SETTINGS, BIG_CUSTOMERS, {})
    [batch] = list(commits(task, busy_account(10), every=10))
    positions = (codec.META_PREFIX + b"positions", msgspec.msgpack.encode({"payments": 3}))
    assert restored(batch + [positions]) == task.accounts


def test_a_record_above_the_warning_size_is_logged_and_counted(capsys: pytest.CaptureFixture[str],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    task = TaskProcessor(BIG_SETTINGS, BIG_CUSTOMERS, {})
    task.process(busy_account(300))
    before = codec.stats.records_over_warn
    monkeypatch.setattr(codec, "warn_bytes", 1_000)
    written = ACCOUNT_CODEC.records(task.accounts, task.changed)
    over = [key for key, value in written if value is not None and len(value) > 1_000]
    assert over and codec.stats.records_over_warn == before + len(over)
    assert codec.stats.largest_record_bytes >= max(len(value) for _, value in written if value is not None)
    logged = capsys.readouterr()
    assert "large changelog record" in logged.out + logged.err and "M" in logged.out + logged.err


def test_the_warning_size_is_a_setting() -> None:
    assert load(environ={}).engine.changelog_record_warn_bytes == 64 * 1024
    assert load(
        environ={"PAYSTREAM_ENGINE__CHANGELOG_RECORD_WARN_BYTES": "1000"}).engine.changelog_record_warn_bytes == 1000
