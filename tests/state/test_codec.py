"""The engine's default codec (`StructCodec`): one versioned record per value, any other format
refused before anything changes; and the state layer imports nothing of an application."""

from __future__ import annotations

import ast
from pathlib import Path

import msgspec
import pytest

from state import codec
from state.codec import FORMAT_VERSION, META_PREFIX, ChangelogFormatError, StructCodec
from state.store import Store


class Balance(msgspec.Struct, array_like=True, gc=False):
    posted: int
    held: int = 0


def test_the_simple_workloads_integer_state_round_trips() -> None:
    ints = StructCodec(int)
    records = ints.records({"a": 5, "b": 1_000_000}, ["a", "b"])
    assert [msgspec.msgpack.decode(value) for _, value in records] == [[1, 5], [1, 1_000_000]]  # type: ignore[arg-type]
    restored: dict[str, int] = {}
    ints.apply(dict(records), restored)
    assert restored == {"a": 5, "b": 1_000_000}


def test_a_struct_store_round_trips_with_tombstones_over_older_values() -> None:
    balances = StructCodec(Balance)
    data = {"A": Balance(5), "C": Balance(7, 1)}
    records = balances.records(data, ["A", "B", "C"])
    assert records[1] == (b"B", None)
    assert balances.decode(records[0][1]) == Balance(5)  # type: ignore[arg-type]
    assert records[0][1] == balances.encode(Balance(5))
    restored = {"B": Balance(1), "C": Balance(0)}  # a snapshot's older values
    balances.apply(dict(records), restored)
    assert restored == data


def test_many_values_decode_in_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(codec, "CHUNK", 7)
    ints = StructCodec(int)
    data = {f"k{n}": n for n in range(50)}
    latest: dict[bytes, bytes | None] = dict(ints.records(data, list(data)))
    latest[b"k3"] = None
    restored: dict[str, int] = {"k3": 3}
    ints.apply(latest, restored)
    assert restored == {key: value for key, value in data.items() if key != "k3"}


def test_another_format_version_is_refused_and_nothing_changes() -> None:
    ints = StructCodec(int)
    restored = {"a": 1, "b": 2}
    future = {b"a": msgspec.msgpack.encode([FORMAT_VERSION + 1, 5]), b"b": None}
    with pytest.raises(ChangelogFormatError, match="format version 2; this build reads format version 1"):
        ints.apply(future, restored)
    with pytest.raises(ChangelogFormatError, match="has no format version"):
        ints.apply({b"a": msgspec.msgpack.encode(5), b"b": None}, restored)
    with pytest.raises(ChangelogFormatError, match="not msgpack"):
        ints.apply({b"a": b"\xc1", b"b": None}, restored)
    with pytest.raises(ChangelogFormatError, match="does not decode"):
        ints.apply({b"a": msgspec.msgpack.encode([1, "five"])}, restored)
    assert restored == {"a": 1, "b": 2}


def test_a_record_of_another_codec_is_refused_not_dropped() -> None:
    """A large account's page (a key that is not UTF-8) in a store of one record per value: the
    application lost its codec (e.g. not wired); restoring must not silently drop the pages."""
    restored: dict[str, int] = {}
    with pytest.raises(ChangelogFormatError, match="not UTF-8"):
        StructCodec(int).apply({b"a": msgspec.msgpack.encode([1, 5]), b"a\xff0": b"\x92\x01\x00"}, restored)
    assert restored == {}


def test_a_struct_codec_keeps_each_value_in_its_own_record() -> None:
    ints = StructCodec(int)
    assert ints.owner(b"A") == b"A" and ints.companions(b"A", 5) is None


def test_the_alarm_logs_the_key_and_size_never_the_value(capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(codec, "warn_bytes", 100)
    before = codec.stats.records_over_warn
    secret = "s3cr3t-" * 40
    records = StructCodec(str).records({"big": secret, "small": "x"}, ["big", "small"])
    assert len(records) == 2 and codec.stats.records_over_warn == before + 1
    assert codec.stats.largest_record_bytes >= len(records[0][1])  # type: ignore[arg-type]
    logged = capsys.readouterr()
    out = logged.out + logged.err
    assert "large changelog record" in out and "big" in out and "s3cr3t" not in out


def test_configure_sets_the_warning_size(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(codec, "warn_bytes", codec.warn_bytes)
    codec.configure(1_234)
    assert codec.warn_bytes == 1_234


def test_a_store_encodes_its_values_with_a_struct_codec_unless_given_one() -> None:
    store: Store[int] = Store("counts", int)
    assert isinstance(store.codec, StructCodec) and store.codec.value_type is int
    other = StructCodec(int)
    assert Store("counts", int, codec=other).codec is other


def test_meta_keys_are_no_store_key() -> None:
    with pytest.raises(UnicodeDecodeError):
        META_PREFIX.decode()


def test_the_state_layer_imports_no_application() -> None:
    """The engine's stores know no payment (or other) domain: no import of `operators` or `flows`."""
    state = Path(codec.__file__).parent
    found = []
    for path in sorted(state.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            found += [f"{path.name}: {name}" for name in names if name.split(".")[0] in ("operators", "flows")]
    assert found == []
