"""Fault injection for chaos tests: `kill -9` this very process at a named point of the commit path.

Off unless `PAYSTREAM_FAULT_<POINT>` holds a probability, e.g. `PAYSTREAM_FAULT_MID_COMMIT=0.05`.
Random kills from outside rarely land inside a 10 ms commit; these points make sure they do.

Points: `before_commit` (outputs sent, nothing committed), `mid_commit` (offsets sent to the
transaction, `commit_transaction` not called), `after_commit` (committed in Kafka, no local
snapshot yet).
"""

from __future__ import annotations

import os
import random
import signal
from collections.abc import Mapping

POINTS = ("before_commit", "mid_commit", "after_commit")
_chances = {point: float(os.environ.get(f"PAYSTREAM_FAULT_{point.upper()}", "0") or 0) for point in POINTS}
_armed = any(_chances.values())
DEATH_MARK = "paystream fault point, kill -9 at: "


def maybe_die(point: str) -> None:
    """SIGKILL the current process with the configured probability for `point`."""
    if _armed and random.random() < _chances[point]:
        # one line on stderr (the worker's log) so a supervisor can tell which point fired
        os.write(2, f"{DEATH_MARK}{point}\n".encode())
        os.kill(os.getpid(), signal.SIGKILL)


def environment(chances: Mapping[str, float]) -> dict[str, str]:
    """The environment variables that arm `chances` (point -> probability) in a child process."""
    unknown = set(chances) - set(POINTS)
    if unknown:
        raise ValueError(f"unknown fault points {sorted(unknown)}; known: {', '.join(POINTS)}")
    return {f"PAYSTREAM_FAULT_{point.upper()}": f"{chance:g}" for point, chance in chances.items()}


def deaths_in_log(text: str) -> dict[str, int]:
    """How many times each fault point fired, counted from a worker log's death lines."""
    counts = {point: 0 for point in POINTS}
    for line in text.splitlines():
        if line.startswith(DEATH_MARK):
            point = line[len(DEATH_MARK):].strip()
            if point in counts:
                counts[point] += 1
    return counts
