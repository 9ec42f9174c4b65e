"""The payment engine as an application of the exactly-once runtime:
`python -m bytewax.run flows.payments:flow -s 1` (`-s`: the epoch length in seconds).

Wiring only: the application's topology (its inputs, the internal credits topic it
repartitions transfers through, its outputs, its store of accounts and its global table of
customers) and its processor (the domain core, `operators.task`). Each task (partition p of
`payments` and of the credits) commits outputs, changelog and offsets in one Kafka transaction
per epoch (`connectors.dataflow`). Decoding, the DLQ branch, the customer-table
join and the per-account logic all run inside the task, because every one of their outputs
must be in that one transaction.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.outputs import Sink

from connectors import dataflow
from connectors.application import Application, CountMetric, Query, StoreSpec
from connectors.context import Context
from operators.account_codec import ACCOUNT_CODEC
from operators.accounts import AccountState, balance_view
from operators.task import TaskProcessor
from paystream.settings import Settings
from state.customers import global_table
from state.rules_table import RuleVersions, rules_table

if TYPE_CHECKING:
    from connectors.bytewax_io import TaskBatch


def payment_processor(context: Context) -> TaskProcessor:
    """The domain core of one task over its store of accounts (changed in place, marked in the store)."""
    accounts = context.store("accounts")
    return TaskProcessor(context.settings, context.table("customers"), accounts.data, accounts.changed,
                         context.table("rules"))  # type: ignore[arg-type]  # the rules table has `current()`


PAYMENTS = Application(
    "payments",
    processor=payment_processor,
    inputs=("payments", "credits"),
    internal=("credits",),  # a transfer's credit, to the task of its recipient
    outputs=("decisions", "ledger", "balances", "alerts", "completed"),
    dead_letters="dlq",
    stores=(StoreSpec("accounts", AccountState, ACCOUNT_CODEC),),  # large accounts paged (operators.account_codec)
    tables={"customers": global_table, "rules": rules_table},  # followed from `customer-status`, `paystream-rules`
    table_topics={"customers": "customers", "rules": "rules"},
    table_defaults={"rules": lambda settings: RuleVersions(settings.rules)},  # no change published: configured
    queries={"accounts": Query("accounts", balance_view)},  # GET /accounts/{id}: the live balance
    counts={  # operators.task.TaskProcessor.counts, exported to Prometheus
        "decision": CountMetric("paystream_decisions", "Payment decisions by outcome", ("outcome",)),
        "reason": CountMetric("paystream_decision_reasons", "Reasons given by declines and reviews", ("reason",)),
        "alert": CountMetric("paystream_alerts", "Fraud alerts by rule", ("rule",)),
        "dlq": CountMetric("paystream_dead_letters", "Records sent to the dead-letter topic, by reason", ("reason",)),
        "duplicate": CountMetric("paystream_duplicate_commands", "Commands recognised as re-sent and not re-applied"),
        "credit": CountMetric("paystream_credits", "Transfer credits applied to their recipient"),
        "credit_duplicate": CountMetric("paystream_duplicate_credits", "Transfer credits recognised as re-sent"),
    },
)


def build_flow(settings: Settings, io: tuple[Source[TaskBatch], Sink[TaskBatch]] | None = None) -> Dataflow:
    """The payment engine's dataflow; `io` replaces the Kafka source and sink (tests pass in-memory ones)."""
    return dataflow.build_flow(settings, PAYMENTS, io)


def __getattr__(name: str) -> Dataflow:
    """`flows.payments:flow`, built from the environment's settings when a runner asks for it
    (so importing the application, as tests do, builds nothing)."""
    if name != "flow":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return dataflow.flow_from_environment(PAYMENTS)
