"""The benchmark's one-rule workload as a second application of the same runtime:
`python -m bytewax.run flows.simple:flow -s 1` (see `operators/simple.py` and `bench/`).

Balances as plain ints, no reference data; the same tasks, transactions, changelog and
snapshots as the payment engine, so the benchmark measures paystream's exactly-once path.
"""

from __future__ import annotations

from bytewax.dataflow import Dataflow

from connectors.application import Application, StoreSpec
from connectors.context import Context
from connectors.dataflow import flow_from_environment
from operators.simple import SimplePaymentsProcessor


def simple_processor(context: Context) -> SimplePaymentsProcessor:
    """The one-rule workload over a task's store of balances."""
    balances = context.store("accounts")
    return SimplePaymentsProcessor(context.settings, {}, balances.data, balances.changed)


SIMPLE = Application("simple", processor=simple_processor, inputs=("payments",),
                     outputs=("decisions", "balances"), stores=(StoreSpec("accounts", int),))


def __getattr__(name: str) -> Dataflow:
    """`flows.simple:flow`, built from the environment's settings when a runner asks for it."""
    if name != "flow":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return flow_from_environment(SIMPLE)
