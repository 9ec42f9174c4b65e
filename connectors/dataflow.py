"""The Bytewax dataflow of an application: one source partition and one sink partition per task.

Wiring only. Each task (partition p of the application's inputs) is read as batches and handed
to the transactional task sink, which runs the application's processor and commits its outputs,
its store's changelog records and its input offsets in one Kafka transaction per epoch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.outputs import Sink

from connectors.application import Application
from paystream.settings import Settings, SettingsError

if TYPE_CHECKING:
    from connectors.bytewax_io import TaskBatch


def build_flow(settings: Settings, app: Application,
               io: tuple[Source[TaskBatch], Sink[TaskBatch]] | None = None) -> Dataflow:
    """Wire inputs → tasks of `app`; `io` replaces the Kafka source and sink (tests pass in-memory ones)."""
    if io is None:
        from connectors.bytewax_io import kafka_source_and_sink

        io = kafka_source_and_sink(settings, app)
    source, sink = io
    flow = Dataflow(f"paystream-{app.name}")
    batches = op.input("inputs", flow, source)
    op.output("tasks", batches, sink)
    return flow


def flow_from_environment(app: Application) -> Dataflow:
    """`app`'s dataflow on Kafka, from the environment's settings: what `module:flow` gives
    `python -m bytewax.run`. Its topics are checked first; a mistake (no Kafka, topics missing,
    a wrong partition count, bad settings) ends the process with one line and exit status 2
    (set `PAYSTREAM_DEBUG=1` for the traceback)."""
    import os
    import sys

    from paystream import clients, logs
    from paystream import settings as settings_module

    try:
        loaded = settings_module.load()
        logs.configure(loaded)
        from connectors.topology import check_topology

        check_topology(loaded, app)
        return build_flow(loaded, app)
    except (clients.SetupError, SettingsError) as error:
        if os.environ.get("PAYSTREAM_DEBUG"):
            raise
        print(f"paystream: {error}", file=sys.stderr)
        raise SystemExit(2) from None
