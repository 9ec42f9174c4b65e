"""How a store's values become changelog records and come back: one versioned codec abstraction.

A task's store (`state.store`) is changelogged to a compacted topic, latest value per key. What
the records of a value are is its store's `Codec`: the engine calls `records` at each commit
(for the keys changed since the last one) and `apply` when it restores (the latest raw value of
each key, from the changelog, a local snapshot or the disk store's database). The engine itself
knows no value type: `StructCodec`, the default, writes each value as one record; an
application with values that may grow without bound brings its own codec (the payment engine's
accounts: `operators.account_codec`, which writes a large account as bounded pages).

Every record value a codec writes carries the changelog format version: msgpack
`[FORMAT_VERSION, ...]`. A record of another version, or without one, is refused with a clear
error (`ChangelogFormatError`), never misread. Keys are UTF-8 (the store's keys), except the
task's own records, which start with `META_PREFIX` (0xFF never occurs in UTF-8): they are the
runtime's, never a codec's, and taken out before `apply`.

The size alarm: a record value above `warn_bytes` (`engine.changelog_record_warn_bytes`, set by
`configure`) is logged (its key and size, never its value) and counted in `stats`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from operator import attrgetter
from typing import Any, Final, Literal, Protocol

import msgspec

from paystream import logs

FORMAT_VERSION: Final = 1  # `decoder` checks `Literal[1]`: change them with it
META_PREFIX: Final = b"\xff\x00"  # the task's own records (e.g. its input positions): never a store's value
CHUNK: Final = 50_000  # values decoded per C call when restoring


class ChangelogFormatError(ValueError):
    """A changelog record this build cannot read (another format version, or not a changelog record)."""


class ChangelogStats:
    """What metrics may read: how many record values above `warn_bytes` were written, and the largest."""

    def __init__(self) -> None:
        self.records_over_warn = 0
        self.largest_record_bytes = 0


stats = ChangelogStats()
warn_bytes = 64 * 1024  # `configure` sets it from `engine.changelog_record_warn_bytes`
_log = logs.get("changelog")
_encoder = msgspec.msgpack.Encoder()


def configure(record_warn_bytes: int) -> None:
    """Set the size above which a changelog record is logged and counted (`engine.changelog_record_warn_bytes`)."""
    global warn_bytes
    warn_bytes = record_warn_bytes


def check_size(value: bytes | None, warn: int, **where: object) -> None:
    """The alarm: count a record value above `warn` bytes and log it with `where` (what names the
    record: its key, never its value) and its size."""
    if value is None:
        return
    size = len(value)
    if size > stats.largest_record_bytes:
        stats.largest_record_bytes = size
    if size > warn:
        stats.records_over_warn += 1
        _log.warning("large changelog record", bytes=size, warn_bytes=warn, **where)


class Codec(Protocol):
    """What a store needs of its values' encoding (see the module docstring).

    - `value_type`: the type of the store's values.
    - `records(data, changed)`: the (key, value) records that make the changelog equal `data`
      for each key in `changed` (a key no longer in `data`: a tombstone, `(key, None)`). Called
      once per commit: it may do commit-time bookkeeping on the values it writes.
    - `apply(latest, data)`: fold the latest raw value of each key (`META_PREFIX` keys taken
      out) into `data`, which may already hold older values (a snapshot's): the inverse of
      `records`. Nothing changes in `data` if a record is of another format.
    - `owner(key)`: the key of the value a record belongs to (the record's own key, unless a
      value is written as several records).
    - `companions(key, value)`: a key prefix of the further records `apply` needs together with
      `key`'s record to rebuild `value` (None: its own record is enough).
    """

    value_type: type

    def records(self, data: Mapping[str, Any], changed: Iterable[str]) -> list[tuple[bytes, bytes | None]]: ...

    def apply(self, latest: dict[bytes, bytes | None], data: dict[str, Any]) -> None: ...

    def owner(self, key: bytes) -> bytes: ...

    def companions(self, key: bytes, value: Any) -> bytes | None: ...


class StructCodec:
    """Each value one record, msgpack `[FORMAT_VERSION, value]`: any msgspec-encodable `value_type`
    (an int, a msgspec `Struct`...). Restoring decodes the values in bulk, one C call per
    `CHUNK` of them, checking every format version on the way.

    >>> class Balance(msgspec.Struct, array_like=True):
    ...     posted: int
    >>> codec = StructCodec(Balance)
    >>> records = codec.records({"A": Balance(5)}, ["A", "B"])  # "B" is not in the store: a tombstone
    >>> records
    [(b'A', b'\\x92\\x01\\x91\\x05'), (b'B', None)]
    >>> restored = {"B": Balance(1)}
    >>> codec.apply(dict(records), restored); restored
    {'A': Balance(posted=5)}
    >>> codec.apply({b"A": msgspec.msgpack.encode([2, [6]])}, restored)
    Traceback (most recent call last):
    ...
    state.codec.ChangelogFormatError: changelog record b'A' has format version 2; this build reads format version 1 only
    """

    __slots__ = ("value_type",)

    def __init__(self, value_type: type) -> None:
        self.value_type = value_type

    def encode(self, value: Any) -> bytes:
        """One value's record value."""
        return _encoder.encode((FORMAT_VERSION, value))

    def decode(self, value: bytes) -> Any:
        """One record value's value back (its format version checked)."""
        return _decode_all([b"?"], {b"?": value}, decoder(self.value_type).decode)[0].state

    def records(self, data: Mapping[str, Any], changed: Iterable[str]) -> list[tuple[bytes, bytes | None]]:
        warn = warn_bytes
        encode = _encoder.encode
        records: list[tuple[bytes, bytes | None]] = []
        append = records.append
        biggest = 0
        for name in changed:
            value = data.get(name)
            if value is None:  # deleted from the store: a tombstone
                append((name.encode(), None))
                continue
            encoded = encode((FORMAT_VERSION, value))
            size = len(encoded)
            if size > biggest:
                biggest = size
            if size > warn:
                check_size(encoded, warn, key=name)
            append((name.encode(), encoded))
        if biggest > stats.largest_record_bytes:
            stats.largest_record_bytes = biggest
        return records

    def apply(self, latest: dict[bytes, bytes | None], data: dict[str, Any]) -> None:
        decode = decoder(self.value_type).decode
        keys = list(latest)
        try:  # the common case, at C speed: only values (no tombstone) of this version
            decoded = [([key.decode() for key in part], list(map(_state_of, decode(
                            _array_header(len(part)) + b"".join([latest[key] for key in part])))))  # type: ignore[misc]
                       for part in _parts(keys)]
        except (TypeError, UnicodeDecodeError, msgspec.DecodeError):  # a tombstone, another version: key by key
            for key in keys:
                _check_key(key)
            tombstones = [key for key in keys if latest[key] is None]
            live = [key for key in keys if latest[key] is not None]
            decoded = [([key.decode() for key in part], list(map(_state_of, _decode_all(part, latest, decode))))
                       for part in _parts(live)]
            for key in tombstones:
                data.pop(key.decode(), None)
        for names, values in decoded:
            data.update(zip(names, values, strict=True))

    def owner(self, key: bytes) -> bytes:
        return key

    def companions(self, key: bytes, value: Any) -> bytes | None:
        return None

    def __repr__(self) -> str:
        return f"StructCodec({self.value_type.__name__})"


def _check_key(key: bytes) -> None:
    """A store's key is UTF-8: another (e.g. a page of another codec's value) is no record of this codec."""
    try:
        key.decode()
    except UnicodeDecodeError:
        raise ChangelogFormatError(
            f"changelog record {key!r} has a key that is not UTF-8: not a record of a store of one record per "
            f"value (written by another codec?)") from None


def _parts(keys: list[bytes]) -> list[list[bytes]]:
    return [keys[start:start + CHUNK] for start in range(0, len(keys), CHUNK)]


# --- bulk decoding ----------------------------------------------------------------------------


def _array_header(length: int) -> bytes:
    """The msgpack header of an array of `length` items (array 32)."""
    return b"\xdd" + length.to_bytes(4, "big")


_decoders: dict[type, msgspec.msgpack.Decoder[Any]] = {}
_state_of = attrgetter("state")


def decoder(value_type: type) -> msgspec.msgpack.Decoder[Any]:
    """Decodes a msgpack array of record values (`[FORMAT_VERSION, value]` each) in one C call,
    checking every version on the way (into small array-like Structs, `.state` the value: half
    the cost of tuples)."""
    found = _decoders.get(value_type)
    if found is None:
        record = msgspec.defstruct(f"Record_{value_type.__name__}", [("version", Literal[1]), ("state", value_type)],
                                   array_like=True, gc=False)
        found = _decoders[value_type] = msgspec.msgpack.Decoder(list[record])  # type: ignore[valid-type]
    return found


def format_error(key: bytes, value: bytes) -> ChangelogFormatError | None:
    """Why one record value is not one this build reads (None if it is)."""
    try:
        decoded = msgspec.msgpack.decode(value)
    except msgspec.DecodeError as error:
        return ChangelogFormatError(f"changelog record {key!r} is not msgpack: {error}")
    if not (isinstance(decoded, list) and len(decoded) == 2 and type(decoded[0]) is int):
        return ChangelogFormatError(
            f"changelog record {key!r} has no format version (written before format versions, or not by "
            f"paystream); this build reads format version {FORMAT_VERSION}: restore from a changelog it wrote")
    if decoded[0] != FORMAT_VERSION:
        return ChangelogFormatError(
            f"changelog record {key!r} has format version {decoded[0]}; this build reads format version "
            f"{FORMAT_VERSION} only")
    return None


def _decode_all(keys: list[bytes], latest: Mapping[bytes, bytes | None],
                decode: Callable[[bytes], list[Any]]) -> list[Any]:
    """The values of `keys`, decoded in one call; a record of another format raises a clear error."""
    try:
        return decode(_array_header(len(keys)) + b"".join([latest[key] for key in keys]))  # type: ignore[misc]
    except (msgspec.ValidationError, msgspec.DecodeError) as error:
        for key in keys:
            problem = format_error(key, latest[key])  # type: ignore[arg-type]
            if problem is not None:
                raise problem from error
        raise ChangelogFormatError(
            f"a changelog record of format version {FORMAT_VERSION} does not decode: {error}") from error
