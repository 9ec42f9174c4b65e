"""The C allocator's arenas: fewer of them, so a process with many threads keeps less memory.

glibc gives each thread that contends for the heap an arena of its own, up to eight per core,
and memory freed in one arena is not reused by another. An engine process has a commit thread
per task and librdkafka's threads per client: with the default, the realistic flow's process
held 50 MiB (limit set in-process) to 110 MiB (`MALLOC_ARENA_MAX=2`) more RSS at 100,000
accounts than with two arenas, at about the same throughput (bench/README.md).
`MALLOC_ARENA_MAX` in the environment does the same before the process starts; this does it
from inside, so `python -m bytewax.run` gets it too.

>>> limit_arenas(0)  # 0: leave the allocator as it is
False
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

_M_ARENA_MAX = -8  # glibc's mallopt parameter


def limit_arenas(arenas: int) -> bool:
    """At most `arenas` malloc arenas from now on (glibc only; elsewhere nothing changes).
    Returns whether the limit was set. `MALLOC_ARENA_MAX` in the environment wins."""
    if arenas <= 0 or "MALLOC_ARENA_MAX" in os.environ:
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
        return False
    return bool(mallopt(_M_ARENA_MAX, arenas))
