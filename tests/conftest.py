"""Shared fixtures: a real local Kafka broker and fresh settings (own topics, own app id) per test."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from paystream.settings import Settings, TopicSettings, load

MakeSettings = Callable[..., Settings]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that uses the broker (directly or through `make_settings`) is marked `broker`;
    the `own_cluster` ones (they take the shared cluster down) move to the end (a stable sort)."""
    items.sort(key=lambda item: item.get_closest_marker("own_cluster") is not None)
    for item in items:
        if "kafka_cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.broker)


@pytest.fixture(scope="session")
def kafka_cluster() -> Any:
    """The local 1-broker Kafka (deploy/local), reused if it already runs; left running afterwards."""
    from deploy.local import cluster

    return cluster.up(1)


def _merged(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merged(base[key], value)
        else:
            base[key] = value
    return base


@pytest.fixture
def make_settings(kafka_cluster: Any, tmp_path: Path) -> Iterator[MakeSettings]:
    """A factory: `make_settings(partitions=4, **overrides)` gives settings on the test broker with
    fresh, unique topic names and `engine.app_id` (so internal topics and the group are fresh too),
    every topic already created. Overrides are nested dicts, e.g. `rules={"velocity": {"max_authorizations": 2}}`.
    Its topics are deleted when the test ends."""
    from tools.topics import create_topics, delete_topics

    made: list[tuple[Settings, list[str]]] = []

    def make(partitions: int = 4, **overrides: Any) -> Settings:
        run = uuid.uuid4().hex[:10]
        tree: dict[str, Any] = {
            "kafka": {"bootstrap_servers": kafka_cluster.bootstrap_servers, "partitions": partitions},
            "topics": {field: f"{name}-{run}" for field, name in msgspec.structs.asdict(TopicSettings()).items()},
            "engine": {"app_id": f"test-{run}", "snapshot_dir": str(tmp_path / f"snapshots-{run}")},
        }
        settings = load(environ={}, **_merged(tree, overrides))
        made.append((settings, create_topics(settings)))
        return settings

    yield make
    for settings, names in made:
        # keep a long session's broker light; no need to wait for the deletion to finish
        delete_topics(settings, names, wait=False)
