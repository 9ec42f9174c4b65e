"""Shadow mode: candidate rules running beside the live flow, on the same inputs, writing only to
their own `*-shadow` topics, so their decisions can be compared with the live ones before they
go live (`paystream run --shadow candidate.toml`).

The shadow is the same application under other settings: its own app id (so its own consumer
group, transactional ids, changelog and credits topics), its outputs and its rules topic
suffixed `-shadow`, the candidate's rules as configured, and HTTP ports of its own. It reads
`payments` and `customer-status` like the live flow and never writes to a live topic.
`paystream verify` audits it like any flow (with the candidate's rules), and `compare` puts
both flows' decisions side by side.

>>> from paystream.settings import load
>>> shadow = shadow_settings(load(environ={}), load(environ={}).rules)
>>> shadow.engine.app_id, shadow.topics.decisions, shadow.topics.payments, shadow.engine.http_port
('paystream-shadow', 'payment-decisions-shadow', 'payments', 9410)
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import msgspec

from paystream.settings import RuleSettings, Settings

SUFFIX = "-shadow"
OUTPUTS = ("decisions", "ledger", "balances", "alerts", "completed", "dlq", "rules")
HTTP_PORT_OFFSET = 100


def shadow_settings(settings: Settings, candidate: RuleSettings) -> Settings:
    """The settings of the shadow flow of `settings` under `candidate` rules (see the module docstring)."""
    topics = msgspec.structs.replace(
        settings.topics, **{name: getattr(settings.topics, name) + SUFFIX for name in OUTPUTS})
    engine = settings.engine
    port = engine.http_port + HTTP_PORT_OFFSET if engine.http_port > 0 else 0
    engine = msgspec.structs.replace(engine, app_id=engine.app_id + SUFFIX, http_port=port,
                                     snapshot_dir=engine.snapshot_dir.rstrip("/") + SUFFIX)
    return msgspec.structs.replace(settings, topics=topics, engine=engine, rules=candidate)


def decision_counts(settings: Settings) -> tuple[Counter[str], Counter[str], dict[str, str]]:
    """(outcomes, reasons, outcome by payment id) of the committed decisions of a flow."""
    from verify.readback import read_topics

    outcomes: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    by_payment: dict[str, str] = {}
    decode = msgspec.json.Decoder(dict[str, Any]).decode
    for record in read_topics(settings, [settings.topics.decisions])[settings.topics.decisions]:
        decision = decode(record.value or b"{}")
        outcomes[decision["decision"]] += 1
        reasons.update(decision.get("reasons", []))
        by_payment[decision["payment_id"]] = decision["decision"]
    return outcomes, reasons, by_payment


def compare(live: Settings, shadow: Settings) -> str:
    """Live and shadow decisions side by side, over the payments both have decided."""
    live_outcomes, live_reasons, live_by = decision_counts(live)
    shadow_outcomes, shadow_reasons, shadow_by = decision_counts(shadow)
    both = live_by.keys() & shadow_by.keys()
    changed = Counter((live_by[p], shadow_by[p]) for p in both if live_by[p] != shadow_by[p])
    lines = [f"{len(both):,} payments decided by both (live {len(live_by):,}, shadow {len(shadow_by):,})",
             f"{'':<32}{'live':>12}{'shadow':>12}"]
    for title, a, b in (("decisions", live_outcomes, shadow_outcomes), ("reasons", live_reasons, shadow_reasons)):
        lines.append(title)
        lines += [f"  {name:<30}{a[name]:>12,}{b[name]:>12,}" for name in sorted(set(a) | set(b))]
    lines += [f"{count:>8,} {before} -> {after}" for (before, after), count in changed.most_common()]
    return "\n".join(lines)
