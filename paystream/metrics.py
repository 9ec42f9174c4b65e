"""The metrics the engine observes as events happen: commit and epoch durations, aborted
transactions, restore progress. Everything else (inputs, lag, state size, the processors'
counts) is read from the tasks when Prometheus scrapes (`connectors/health.py`), so the hot
path pays nothing for it.

Every metric name starts with `paystream_`, and no label ever carries an account id, a
payment id or card data: labels are topics, partitions, stores, tables, outcomes, reasons and
rules, all bounded sets. `docs/METRICS.md` lists them; the Grafana dashboard under
`deploy/grafana/` is built on exactly these names.

>>> COMMIT_SECONDS.observe(0.02)
>>> TRANSACTIONS_ABORTED.inc(0)
"""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Histogram

PREFIX: Final = "paystream_"

_SECONDS_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

COMMIT_SECONDS: Final = Histogram(
    "paystream_commit_seconds",
    "Seconds a task's checkpoint took on the commit thread: changelog sends, offsets and the transaction commit",
    buckets=_SECONDS_BUCKETS)
EPOCH_SECONDS: Final = Histogram(
    "paystream_epoch_seconds",
    "Seconds between two committed transactions of a busy task (the epoch as Kafka sees it)",
    buckets=_SECONDS_BUCKETS)
TRANSACTIONS_ABORTED: Final = Counter(
    "paystream_transactions_aborted",
    "Transactions this process aborted (a failed commit, or uncommitted work at a stop)")
RESTORED_RECORDS: Final = Counter(
    "paystream_restore_records",
    "Changelog records read to restore stores, as the restore goes (progress)", ["changelog"])
RESTORE_SECONDS: Final = Histogram(
    "paystream_restore_seconds",
    "Seconds one store of one task took to restore from its changelog",
    ["changelog"], buckets=(0.01, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0))
