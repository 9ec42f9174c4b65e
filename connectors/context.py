"""What a processor of one task sees of the runtime: its stores, tables, and where to send.

Everything a processor changes or sends through its context belongs to the task's current
transaction: its store changes go to the changelog, its sent records to their topics, with
the input offsets, at the epoch's commit; or none of it, after a crash (the inputs are then
read again, and the restored stores are as the last commit left them).

>>> from connectors.application import Application, StoreSpec
>>> from paystream.settings import load
>>> from state.store import Store
>>> app = Application("counting", processor=lambda context: None, outputs=("counts",),
...                   stores=(StoreSpec("counts", int),))
>>> context = Context(load(environ={}), app, "payments-0", {"counts": Store("counts", int)}, {})
>>> context.store("counts").put("A", 1)
>>> context.send("counts", b"A", b"1")
>>> context.dead_letter(InboundRecord("payments", 0, 7, b"A", b"{"), "malformed", "unexpected end")
>>> [(topic, key, value) for topic, key, value, _ in context.drain()]
[('counts', b'A', b'1'), ('payments-dlq', b'A', b'{')]
>>> context.send("elsewhere", b"A", b"1")
Traceback (most recent call last):
...
ValueError: application counting: 'elsewhere' is not one of its output topics (counts, dlq); declare it in `outputs`
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from paystream.records import InboundRecord, OutboundRecord
from paystream.settings import Settings
from state.store import Store

if TYPE_CHECKING:
    from connectors.application import Application

MAX_ERROR_CHARS = 512  # a dead letter's error header is cut to this


class Context:
    """One task's view of the runtime (see the module docstring)."""

    def __init__(self, settings: Settings, app: Application, task_id: str, stores: Mapping[str, Store[Any]],
                 tables: Mapping[str, Mapping[str, Any]]) -> None:
        self.settings = settings
        self.app = app
        self.task_id = task_id
        self.partition = int(task_id.rsplit("-", 1)[1])
        self._stores = stores
        self._tables = tables
        self._topics = {name: app.topic(settings, name) for name in (*app.outputs, app.dead_letters, *app.internal)}
        self._outbox: list[OutboundRecord] = []
        self.counts: Counter[tuple[str, ...]] = Counter()  # ("dlq", reason): the dead letters sent here

    def store(self, name: str) -> Store[Any]:
        """The task's store `name` (declared in the application's `stores`)."""
        try:
            return self._stores[name]
        except KeyError:
            raise KeyError(f"application {self.app.name}: no store {name!r} (stores: "
                           f"{', '.join(self._stores) or 'none'})") from None

    def table(self, name: str) -> Mapping[str, Any]:
        """The global table `name` (declared in the application's `tables`), shared by the process's tasks."""
        try:
            return self._tables[name]
        except KeyError:
            raise KeyError(f"application {self.app.name}: no table {name!r} (tables: "
                           f"{', '.join(self._tables) or 'none'})") from None

    @property
    def tables(self) -> tuple[str, ...]:
        """The names of the global tables this task can read."""
        return tuple(self._tables)

    def topic(self, name: str) -> str:
        """The Kafka topic of a declared output or internal topic (as the settings name it)."""
        try:
            return self._topics[name]
        except KeyError:
            raise ValueError(f"application {self.app.name}: {name!r} is not one of its output topics "
                             f"({', '.join(self._topics)}); declare it in `outputs`") from None

    def send(self, topic: str, key: bytes | None, value: bytes | None,
             headers: list[tuple[str, bytes]] | None = None) -> None:
        """Write a record to a declared output (or internal) topic in the task's transaction."""
        self._outbox.append((self.topic(topic), key, value, headers))

    def dead_letter(self, record: InboundRecord, reason: str, error: str = "") -> None:
        """Copy `record` to the dead-letter topic, with why (`reason`: a short code, `error`: the
        detail) and where it came from in its headers; its key and value are kept as they were."""
        headers = [("dlq.reason", reason.encode()), ("dlq.error", error[:MAX_ERROR_CHARS].encode()),
                   ("dlq.topic", record.topic().encode()), ("dlq.partition", str(record.partition()).encode()),
                   ("dlq.offset", str(record.offset()).encode())]
        self._outbox.append((self._topics[self.app.dead_letters], record.key(), record.value(), headers))
        self.counts[("dlq", reason)] += 1

    def drain(self) -> list[OutboundRecord]:
        """What was sent since the last drain, in order (the runtime calls this after each batch)."""
        sent, self._outbox = self._outbox, []
        return sent
