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

POINTS = ("before_commit", "mid_commit", "after_commit")
_chances = {point: float(os.environ.get(f"PAYSTREAM_FAULT_{point.upper()}", "0") or 0) for point in POINTS}
_armed = any(_chances.values())


def maybe_die(point: str) -> None:
    """SIGKILL the current process with the configured probability for `point`."""
    if _armed and random.random() < _chances[point]:
        os.kill(os.getpid(), signal.SIGKILL)
