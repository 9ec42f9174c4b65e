"""Interactive queries: `GET /{query}/{key}` on any process answers from the live task that owns
`key`, as Kafka Streams' interactive queries with `application.server` do.

The key's task is the partition its murmur2 hash gives (as for the inputs). The process that has
that task open answers from its store; any other process forwards the question to its peers
(`engine.http_peers`, every process's `host:port`), which answer only for tasks they own. The
answer carries the task's input positions: the offsets of the records the answer reflects
(processed by the task; the state may be ahead of the last committed transaction by at most
one epoch, as Kafka Streams' stores are).

Status codes: 200 (the answer), 404 (the owner has no such key, or no such query), 421 (a
forwarded question this process cannot answer: not its task), 503 (no process answered: the
task is opening or moving).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from paystream.partitioning import partition_for
from paystream.settings import Settings

if TYPE_CHECKING:
    from connectors.tasks import TaskRegistry

FORWARDED = "X-Paystream-Forwarded"

Answer = tuple[int, dict[str, Any]]


def local(registries: Iterable[TaskRegistry], settings: Settings, name: str, key: str) -> Answer | None:
    """The answer if this process owns `key`'s task (open), a 404 for an unknown query, else None."""
    known = False
    for registry in registries:
        query = registry.app.queries.get(name)
        if query is None:
            continue
        known = True
        partition = partition_for(key.encode(), settings.kafka.partitions)
        task = registry.tasks().get(_task_id(registry, settings, partition))
        if task is None or isinstance(task, BaseException):
            continue
        value = task.stores[query.store].store.get(key)
        position = {topic: offset for (topic, _), offset in sorted(task.positions.items())}
        where = {"task": task.task_id, "partition": partition, "positions": position}
        if value is None:
            return 404, {"error": f"no {name} {key!r}", **where}
        return 200, {"key": key, **dict(query.answer(value)), **where}
    if not known:
        return 404, {"error": f"no query {name!r}"}
    return None


def _task_id(registry: TaskRegistry, settings: Settings, partition: int) -> str:
    from connectors.tasks import task_id_of

    return task_id_of(settings, partition, registry.app)


def answer(registries: Iterable[TaskRegistry], settings: Settings, name: str, key: str, forwarded: bool) -> Answer:
    """`GET /{name}/{key}`: here if this process owns the key, else from the peer that does."""
    found = local(list(registries), settings, name, key)
    if found is not None:
        return found
    if forwarded:  # a peer asked: only the owner answers, so questions never loop
        return 421, {"error": "not this process's task"}
    for peer in [p.strip() for p in settings.engine.http_peers.split(",") if p.strip()]:
        status, body = _ask(peer, name, key)
        if status in (200, 404):
            return status, body
    return 503, {"error": f"no process has the task of {name} {key!r} open (starting, restoring or moving); "
                          f"retry shortly"}


def _ask(peer: str, name: str, key: str) -> Answer:
    url = f"http://{peer}/{urllib.parse.quote(name)}/{urllib.parse.quote(key, safe='')}"
    request = urllib.request.Request(url, headers={FORWARDED: "1"})
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        try:
            return error.code, json.loads(error.read())
        except ValueError:
            return error.code, {}
    except (OSError, ValueError):
        return 0, {}
