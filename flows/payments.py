"""The payment dataflow: `python -m bytewax.run flows.payments:flow -s 1`.

Wiring only. Each task (a partition of `payments` and its credits) is read as batches and
handed to the transactional task sink, which runs the domain core and commits outputs,
changelog and offsets in one Kafka transaction per epoch (`-s` is the epoch length in seconds).
Decoding, the DLQ branch, the customer-table join and the per-account logic all run inside the
task, because every one of their outputs must be in that one transaction.
"""

from __future__ import annotations

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.outputs import Sink

from paystream import logs, settings as settings_module
from paystream.settings import Settings


def build_flow(settings: Settings, io: tuple[Source, Sink] | None = None) -> Dataflow:
    """Wire inputs → tasks; `io` replaces the Kafka source and sink (tests pass in-memory ones)."""
    if io is None:
        from connectors.bytewax_io import kafka_source_and_sink

        io = kafka_source_and_sink(settings)
    source, sink = io
    flow = Dataflow("paystream-payments")
    batches = op.input("inputs", flow, source)
    op.output("tasks", batches, sink)
    return flow


def _flow_from_environment() -> Dataflow:
    loaded = settings_module.load()
    logs.configure(loaded)
    return build_flow(loaded)


flow = _flow_from_environment()
