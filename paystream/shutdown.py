"""A graceful stop: SIGTERM or SIGINT ends the input, the open epoch commits, the clients close, exit 0.

A rolling update or `kubectl delete pod` sends SIGTERM. Killed at once, the process would
leave its transactions open, and every `read_committed` reader of every output partition would
wait until a successor fenced them. Instead:

1. the handler (run by Bytewax's loop on the main thread, which checks signals every turn)
   only sets a flag; every task source partition then ends its input (`StopIteration`);
2. Bytewax writes what is in flight and calls each sink partition's `snapshot()` once more:
   the open epoch commits, and `cli_main` returns;
3. `connectors.tasks.close_all()` (from `paystream.worker`, or at interpreter exit under
   `python -m bytewax.run`) waits for the commits in flight and closes producers and consumers.

A watchdog ends the process after `engine.shutdown_timeout_ms` if that has not happened (in a
cluster of several processes the dataflow ends only when every process stops, so a lone
SIGTERMed process would wait for the others); whatever is still open is then fenced and
aborted by the task's next owner, as after a crash. A second signal stops at once.
"""

from __future__ import annotations

import atexit
import os
import signal
import threading
import time
from types import FrameType

from paystream import logs

_requested = threading.Event()
_installed = False
_timeout_s = 20.0
EXIT_TIMED_OUT = 3
EXIT_STUCK = 4  # a call into the Kafka client never returned: the process must restart


def abandon(reason: str) -> None:
    """End the process now: a thread is stuck where nothing can unstick it (a Kafka client call
    that ignored its timeout). Every thread's stack goes to stderr (the worker's log) first; the
    next owner of the process's tasks fences whatever they left open."""
    import faulthandler
    import sys

    logs.get("shutdown").critical("abandoning the process", reason=reason)
    faulthandler.dump_traceback(all_threads=True)
    sys.stderr.flush()
    os._exit(EXIT_STUCK)


def requested() -> bool:
    """Whether a stop was asked for (the sources check this on every batch)."""
    return _requested.is_set()


def request() -> None:
    """Ask for a graceful stop, as SIGTERM does (tests and embedding code)."""
    if _requested.is_set():
        return
    _requested.set()
    logs.get("shutdown").info("graceful stop: ending input, committing the open epoch",
                              timeout_s=_timeout_s)
    threading.Thread(target=_watchdog, name="shutdown-watchdog", daemon=True).start()


def install(timeout_ms: int) -> None:
    """Handle SIGTERM and SIGINT gracefully in this process (once; only from the main thread)."""
    global _installed, _timeout_s
    _timeout_s = timeout_ms / 1000
    if _installed or threading.current_thread() is not threading.main_thread():
        return
    _installed = True
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    atexit.register(close_tasks)


def _on_signal(signum: int, frame: FrameType | None) -> None:
    # never raise here: Bytewax treats an exception from a signal handler as an abrupt stop
    if _requested.is_set():
        os._exit(128 + signum)  # a second signal: the operator insists
    request()


def _watchdog() -> None:
    time.sleep(_timeout_s)
    logs.get("shutdown").error("graceful stop did not finish in time; exiting, the next owner fences what is open",
                               timeout_s=_timeout_s)
    os._exit(EXIT_TIMED_OUT)


def close_tasks() -> bool:
    """Close every task of this process (commits in flight settle; uncommitted work is aborted)."""
    from connectors.tasks import close_all

    return close_all()
