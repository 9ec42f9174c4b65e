"""The three-broker chaos test takes the shared 1-broker cluster down and up again: it runs last."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Move every `three_brokers` test to the end of the run (a stable sort keeps the rest in order)."""
    items.sort(key=lambda item: item.get_closest_marker("three_brokers") is not None)
