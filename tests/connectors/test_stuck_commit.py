"""A commit whose Kafka call never returns (a client call that ignored its timeout) ends the
worker instead of stalling it forever: the process restarts and the next owner fences the task."""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

import pytest

from connectors import tasks
from connectors.tasks import TaskRuntime, task_id_of
from flows.payments import PAYMENTS
from paystream.settings import load


class Abandoned(Exception):
    pass


def test_a_commit_stuck_past_its_deadlines_abandons_the_process(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load(environ={}, engine={"commit_timeout_ms": 100, "transaction_timeout_ms": 1_000})
    monkeypatch.setattr(tasks, "STUCK_GRACE_S", 0.2)
    task = TaskRuntime(settings, task_id_of(settings, 0), {"customers": {}}, app=PAYMENTS)
    reasons: list[str] = []

    def abandon(reason: str) -> Any:
        reasons.append(reason)
        raise Abandoned(reason)

    task._abandon = abandon  # type: ignore[method-assign]
    task._committing = Future()  # a commit thread that never comes back
    with pytest.raises(Abandoned):
        task._settle()
    assert "stuck in the Kafka client" in reasons[0] and task.task_id in reasons[0]


def test_a_commit_that_returns_in_time_is_settled_and_its_failure_raised() -> None:
    settings = load(environ={})
    task = TaskRuntime(settings, task_id_of(settings, 0), {"customers": {}}, app=PAYMENTS)
    failed: Future[None] = Future()
    failed.set_exception(RuntimeError("fenced"))
    task._committing = failed
    with pytest.raises(RuntimeError, match="fenced"):
        task._settle()
    assert task._committing is None
