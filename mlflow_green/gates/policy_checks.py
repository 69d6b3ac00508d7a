"""Validation of one policy's tables and keys (used by :func:`mlflow_green.gates.policy.parse_policy`).

Every problem is a :class:`~mlflow_green.errors.PolicyError` naming the file, the table, the key,
the problem and the valid keys.

Example:
    >>> parse_rules({"max_energy_kwh": 0.5}, "aliases.champion", "p.toml").max_energy_kwh
    0.5
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from mlflow_green.errors import PolicyError
from mlflow_green.gates.rules import RULE_SPECS, Rules

RULE_KEYS = tuple(RULE_SPECS)


def rule_fields(rules: Rules) -> dict[str, Any]:
    return {key: rules.value(key) for key in RULE_KEYS}


def parse_named_tables(value: Any, table: str, source: str) -> dict[str, Rules]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise PolicyError(
            None, table, f"must be a table of tables ([{table}.NAME]), got {describe(value)}", source=source
        )
    parsed = {}
    for name, rules in value.items():
        if not isinstance(name, str) or not name.strip():
            raise PolicyError(key_name(name), table, "a name must be a non-empty string", source=source)
        if not isinstance(rules, Mapping):
            raise PolicyError(
                name, table, f"must be a table ([{table}.{name}]) of rules, got {describe(rules)}",
                valid_keys=RULE_KEYS, source=source,
            )
        parsed[name] = parse_rules(rules, f"{table}.{name}", source)
    return parsed


def parse_rules(value: Any, table: str, source: str) -> Rules:
    if not isinstance(value, Mapping):
        raise PolicyError(None, table, f"must be a table of rules, got {describe(value)}", valid_keys=RULE_KEYS, source=source)
    settings: dict[str, Any] = {}
    for key, setting in value.items():
        spec = RULE_SPECS.get(key) if isinstance(key, str) else None
        if spec is None:
            raise PolicyError(key_name(key), table, "unknown key", valid_keys=RULE_KEYS, source=source)
        settings[key] = validate_setting(spec.kind, spec.unit, key, setting, table, source)
    return Rules(section=table, **settings)


def validate_setting(kind: str, unit: str, key: str, value: Any, table: str, source: str) -> Any:
    def fail(expected: str) -> PolicyError:
        return PolicyError(key, table, f"must be {expected}, got {describe(value)}", valid_keys=RULE_KEYS, source=source)

    if kind == "bool":
        if not isinstance(value, bool):
            raise fail("true or false")
        return value
    unit_note = f" ({unit})" if unit else ""
    expected = "a number from 0 to 1" if kind == "fraction" else f"a finite number >= 0{unit_note}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise fail(expected)
    try:
        number = float(value)
    except (OverflowError, ValueError):
        raise fail(expected) from None
    if not math.isfinite(number) or number < 0 or (kind == "fraction" and number > 1):
        raise fail(expected)
    return number


def check_consistent(rules: Rules, source: str) -> None:
    if rules.require_inference_energy and rules.max_energy_per_sample_predict_j is None:
        raise PolicyError(
            "require_inference_energy",
            rules.section,
            "needs max_energy_per_sample_predict_j in the same table or in [default]",
            valid_keys=RULE_KEYS,
            source=source,
        )


def check_not_empty(rules: Rules, source: str) -> None:
    if rules.checks():
        return
    inherited = "" if rules.section == "default" else " (nor does [default])"
    raise PolicyError(
        None,
        rules.section,
        f"this section checks nothing{inherited}, so it would pass every version: give it a rule "
        "such as max_energy_kwh = 0.5, or remove the table",
        valid_keys=RULE_KEYS,
        source=source,
    )


def key_name(key: Any) -> str:
    return key if isinstance(key, str) else repr(key)


def describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"
