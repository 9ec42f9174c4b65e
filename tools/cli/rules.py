"""`paystream rules show | set`: the rules in force, published on the compacted rules topic and
applied by running engines to the commands they process after reading them (no restart).

    paystream rules set velocity.max_authorizations=3 single_limit.max_amount=500000 --note "BF peak"

Only thresholds and switches can be published (`settings.MUTABLE_RULES`); windows, the duplicate
horizon and the event-time bounds stay as configured. Every decision records the version it
was made under (`rules_version`), so `paystream verify` replays it exactly.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("rules", help="show or publish the rules in force (no restart)")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions.add_parser("show", help="the version in force and its thresholds").set_defaults(func=show, needs_kafka=True)
    publish = actions.add_parser("set", help="publish a new version: SECTION.FIELD=VALUE ...")
    publish.add_argument("changes", nargs="+", metavar="SECTION.FIELD=VALUE")
    publish.add_argument("--note", default="", help="why (kept with the version)")
    publish.set_defaults(func=set_rules, needs_kafka=True)


def in_force(settings: Any) -> Any:
    """The engine's own fold of the rules topic (`state.rules_table.RuleVersions`), read to its end."""
    from state.rules_table import RuleVersions
    from verify.readback import read_topics

    versions = RuleVersions(settings.rules)
    for record in read_topics(settings, [settings.topics.rules])[settings.topics.rules]:
        versions.apply(record.key, record.value, record.partition, record.offset)
    return versions


def parse_changes(changes: list[str]) -> dict[str, dict[str, Any]]:
    """`["velocity.max_authorizations=3", "funds.enabled=false"]` as sections of fields, checked
    against what may be published.

    >>> parse_changes(["velocity.max_authorizations=3", "funds.enabled=false"])
    {'velocity': {'max_authorizations': 3}, 'funds': {'enabled': False}}
    >>> parse_changes(["velocity.window_ms=1"])
    Traceback (most recent call last):
    ValueError: velocity.window_ms cannot be published (windows, horizon and event time stay as configured); \
publishable: single_limit.enabled, single_limit.max_amount, daily_limit.enabled, velocity.enabled, \
velocity.max_authorizations, impossible_travel.enabled, impossible_travel.max_speed_kmh, customer.enabled, funds.enabled
    """
    from paystream.settings import MUTABLE_RULES

    publishable = [f"{section}.{name}" for section, names in MUTABLE_RULES.items() for name in names]
    sections: dict[str, dict[str, Any]] = {}
    for change in changes:
        path, equals, text = change.partition("=")
        section, _, name = path.partition(".")
        if not equals or name not in MUTABLE_RULES.get(section, ()):
            raise ValueError(f"{path} cannot be published (windows, horizon and event time stay as configured); "
                             f"publishable: {', '.join(publishable)}")
        value: Any
        if name == "enabled":
            if text.lower() not in ("true", "false"):
                raise ValueError(f"{path} takes true or false, not {text!r}")
            value = text.lower() == "true"
        else:
            try:
                value = int(text.replace("_", ""))
            except ValueError:
                raise ValueError(f"{path} takes a whole number (minor units, counts, km/h), not {text!r}") from None
            if value < 0:
                raise ValueError(f"{path} must be >= 0, not {value}")
        sections.setdefault(section, {})[name] = value
    return sections


def show(args: argparse.Namespace) -> int:
    from paystream.settings import MUTABLE_RULES

    settings = args.settings
    versions = in_force(settings)
    version, rules = versions.current()
    print(f"rules version {version}" + (" (as configured: nothing published yet)" if version == 0 else ""))
    for section, names in MUTABLE_RULES.items():
        for name in names:
            now = getattr(getattr(rules, section), name)
            configured = getattr(getattr(settings.rules, section), name)
            changed = "" if now == configured else f"   (configured: {configured})"
            print(f"  {section}.{name:<20} {now}{changed}")
    return 0


def set_rules(args: argparse.Namespace) -> int:
    import msgspec
    from confluent_kafka import Producer

    from paystream import clients
    from paystream.wire import RULES_KEY, RulesChange

    settings = args.settings
    try:
        changes = parse_changes(args.changes)
    except ValueError as error:
        print(f"paystream rules: {error}", file=sys.stderr)
        return 2
    clients.require_topics(settings, [settings.topics.rules])
    version, rules = in_force(settings).current()
    sections = {section: msgspec.structs.replace(getattr(rules, section), **fields)
                for section, fields in changes.items()}
    change = RulesChange(version=version + 1, rules=msgspec.structs.replace(rules, **sections),
                         at=int(time.time() * 1000), note=args.note)
    failures: list[str] = []
    producer = Producer(clients.producer_config(settings))
    producer.produce(settings.topics.rules, key=RULES_KEY, value=msgspec.json.encode(change),
                     on_delivery=lambda error, _message: failures.append(str(error)) if error else None)
    if producer.flush(30) or failures:
        print(f"paystream rules: not published: {failures[0] if failures else 'timed out'}", file=sys.stderr)
        return 1
    print(f"rules version {change.version} published; running engines apply it to the commands they process "
          f"once they have read it (within a second or so); `paystream rules show` to check")
    return 0
