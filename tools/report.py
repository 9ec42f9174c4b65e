"""What happened in a run, from the committed output topics: decisions by outcome and reason,
dead letters by reason, alerts by rule, and the reference model's verdict.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import msgspec

from paystream.settings import Settings


class _Decision(msgspec.Struct):
    decision: str
    reasons: list[str]
    type: str


class _Alert(msgspec.Struct):
    rule: str


def summarize(snapshot: Any) -> dict[str, Counter[str]]:
    """Counters over a `verify.audit.Snapshot` of the topics."""
    decide = msgspec.json.Decoder(_Decision).decode
    alert = msgspec.json.Decoder(_Alert).decode
    outcomes: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    by_type: Counter[str] = Counter()
    for record in snapshot.decisions:
        decision = decide(record.value)
        outcomes[decision.decision] += 1
        by_type[f"{decision.type} {decision.decision}"] += 1
        reasons.update(decision.reasons)
    dead: Counter[str] = Counter()
    for record in snapshot.dlq:
        headers = dict(record.headers)
        dead[(headers.get("dlq.reason") or b"?").decode()] += 1
    alerts: Counter[str] = Counter(alert(record.value).rule for record in snapshot.alerts)
    return {"decisions": outcomes, "reasons": reasons, "by type": by_type, "dead letters": dead, "alerts": alerts}


def render(summary: dict[str, Counter[str]]) -> str:
    """Side-by-side-free, plain text tables, one per counter."""
    lines = []
    for title, counter in summary.items():
        total = sum(counter.values())
        lines.append(f"{title} ({total:,})")
        for name, count in counter.most_common():
            bar = "█" * max(1, round(30 * count / max(total, 1)))
            lines.append(f"  {name:<32} {count:>9,}  {bar}")
        if not counter:
            lines.append("  (none)")
        lines.append("")
    return "\n".join(lines)


def report(settings: Settings) -> tuple[str, bool]:
    """The run report and whether the reference model and every invariant agree."""
    from verify.audit import audit
    from verify.geo import distance_km
    from verify.readback import read_snapshot

    snapshot = read_snapshot(settings)
    result = audit(snapshot, settings.rules, distance_km)
    text = render(summarize(snapshot)) + "\nexactly-once invariants and reference model:\n" + result.table()
    return text, result.ok
