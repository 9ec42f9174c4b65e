"""The auditor reads the configured rules as its own shape, and refuses one it does not model."""

from __future__ import annotations

import pytest

from paystream.settings import RuleSettings, load
from verify.rules import AuditRules, RulesMismatch, audit_rules


def test_the_engine_settings_read_as_the_auditors_rules() -> None:
    settings = load(environ={},
                    rules={"velocity": {"max_authorizations": 2}, "duplicate": {"horizon_ms": 3 * 86_400_000}})
    rules = audit_rules(settings.rules)
    assert isinstance(rules, AuditRules)
    assert (rules.velocity.max_authorizations, rules.duplicate.horizon_ms) == (2, 3 * 86_400_000)
    assert audit_rules(rules) is rules


def test_a_rule_the_auditor_does_not_model_stops_the_audit() -> None:
    from msgspec import to_builtins

    configured = to_builtins(RuleSettings())
    configured["velocity"]["max_amount"] = 10  # a knob the engine gained
    with pytest.raises(RulesMismatch, match="max_amount"):
        audit_rules(configured)
    del configured["velocity"]["max_amount"], configured["funds"]  # a rule the engine dropped
    with pytest.raises(RulesMismatch, match="funds"):
        audit_rules(configured)
