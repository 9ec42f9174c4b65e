"""The benchmark's simple workload on paystream's exactly-once task machinery:
`python -m bytewax.run flows.simple:flow -s 1` (see `operators/simple.py` and `bench/`).
"""

from __future__ import annotations

import msgspec
from bytewax.dataflow import Dataflow

from flows.payments import build_flow
from paystream import logs, settings as settings_module


def _flow_from_environment() -> Dataflow:
    loaded = settings_module.load()
    logs.configure(loaded)
    simple = msgspec.structs.replace(loaded, engine=msgspec.structs.replace(loaded.engine, workload="simple"))
    return build_flow(simple)


flow = _flow_from_environment()
