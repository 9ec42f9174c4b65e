"""A task's key-value store: its values in memory, and the keys changed since the last commit.

Each task of an application owns its stores (key: `str`, value: the store's `value_type`).
The processor reads and changes values through it; the store remembers which keys changed
(`changed`), and at each commit the runtime writes exactly those keys to the task's changelog
partition, encoded by the store's `codec` (`state.codec`; by default `StructCodec`, one
versioned msgpack record per value), in the same transaction as the outputs and input
offsets, then clears the set. Restore fills `data` from the changelog (and a local snapshot),
decoded by the same codec, before the processor sees the store.

A value may be changed in place (the hot path of the payment engine does): then `touch(key)`
marks it, as `put` and `delete` do.

>>> store: Store[int] = Store("balances", int)
>>> store.put("A", 10); store.get("A"), store.get("B", 0)
(10, 0)
>>> store.delete("A"); sorted(store.changed), "A" in store
(['A'], False)
"""

from __future__ import annotations

from collections.abc import ItemsView
from typing import Generic, TypeVar, overload

from state.codec import Codec, StructCodec

V = TypeVar("V")
D = TypeVar("D")


class Store(Generic[V]):
    """The values of one task, by key, and the keys changed since the last commit.

    `codec`: how the values go to the changelog and come back (default: `StructCodec(value_type)`).
    """

    __slots__ = ("name", "value_type", "codec", "data", "changed")

    def __init__(self, name: str, value_type: type[V], data: dict[str, V] | None = None,
                 codec: Codec | None = None) -> None:
        self.name = name
        self.value_type = value_type
        self.codec: Codec = StructCodec(value_type) if codec is None else codec
        self.data: dict[str, V] = {} if data is None else data  # the values (hot paths may read it directly)
        self.changed: set[str] = set()  # keys to write at the next commit (a deleted key: a tombstone)

    @overload
    def get(self, key: str) -> V | None: ...

    @overload
    def get(self, key: str, default: D) -> V | D: ...

    def get(self, key: str, default: object = None) -> object:
        return self.data.get(key, default)

    def put(self, key: str, value: V) -> None:
        self.data[key] = value
        self.changed.add(key)

    def touch(self, key: str) -> None:
        """`key`'s value was changed in place: write it at the next commit."""
        self.changed.add(key)

    def delete(self, key: str) -> None:
        self.data.pop(key, None)
        self.changed.add(key)

    def items(self) -> ItemsView[str, V]:
        return self.data.items()

    def contents(self) -> dict[str, V]:
        """Every key and value the store holds (a copy; on disk, every value decoded: for tests)."""
        return dict(self.data)

    def __contains__(self, key: object) -> bool:
        return key in self.data

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        return f"Store({self.name!r}, {self.value_type.__name__}, {len(self.data)} keys, {len(self.changed)} changed)"
