"""Gate policies: a TOML file of rules, per alias and per stage, parsed and validated up front.

Format (every table optional; all limits in the unit of the key)::

    [default]                      # inherited by every [aliases.*] and [stages.*] table
    measured_only = true           # reject estimated energy (green.estimated = true)
    max_energy_kwh = 2.0

    [aliases.champion]             # checked when the alias `champion` is set; overrides [default]
    max_energy_kwh = 0.5
    min_accuracy_per_kwh = 1500
    beat_current_by_percent = 5    # accuracy/kWh at least 5 % above the current champion

    [aliases.staging]
    measured_only = false          # estimates are fine for staging

    [aliases."*"]                  # any other alias (without it, other aliases are not gated)

    [stages.Production]            # checked on a transition to Production (case-insensitive)
    max_energy_kwh = 0.5

Keys: see :data:`mlflow_green.gates.rules.RULE_SPECS`. The validated :class:`Policy` is
:mod:`~mlflow_green.gates.policy_model`. Unknown keys, wrong types, negative or
non-finite numbers and a ``min_sparsity`` outside 0..1 raise :class:`~mlflow_green.errors.PolicyError`
naming the file, the table, the key, the problem and the valid keys.

Example:
    >>> policy = loads_policy('''
    ... [default]
    ... measured_only = true
    ... [aliases.champion]
    ... max_energy_kwh = 0.5
    ... ''', source="green-policy.toml")
    >>> rules = policy.for_alias("champion")
    >>> rules.section, rules.measured_only, rules.max_energy_kwh
    ('aliases.champion', True, 0.5)
    >>> policy.for_alias("canary") is None     # not covered: not gated
    True
    >>> try:
    ...     loads_policy("[default]\\nmax_energy_kwh = -1", source="p.toml")
    ... except PolicyError as err:
    ...     print(str(err)[:76])
    p.toml: [default] max_energy_kwh: must be a finite number >= 0 (kWh), got -1
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from mlflow_green.errors import ArgumentTypeError, PolicyError
from mlflow_green.gates.policy_checks import (
    RULE_KEYS,
    check_consistent,
    check_not_empty,
    describe,
    key_name,
    parse_named_tables,
    parse_rules,
    rule_fields,
)
from mlflow_green.gates.policy_model import STAGES, WILDCARD, Policy, canonical_stage
from mlflow_green.gates.rules import Rules

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    try:
        import tomli as tomllib
    except ImportError:  # pragma: no cover
        tomllib = None  # type: ignore[assignment]

__all__ = [
    "ENV_GATE_POLICY", "RULE_KEYS", "TOP_LEVEL_KEYS", "WILDCARD", "Policy", "canonical_stage", "load_policy",
    "loads_policy", "parse_policy",
]

ENV_GATE_POLICY = "MLFLOW_GREEN_GATE_POLICY"
"""Environment variable of the server: path of the policy file that ``mlflow server --app-name green`` enforces."""

TOP_LEVEL_KEYS = ("default", "aliases", "stages")


def load_policy(path: str | os.PathLike[str]) -> Policy:
    """Read and validate a policy file.

    Raises:
        PolicyError: The file is missing, unreadable, not TOML, has a malformed rule, or has no
            rules at all (an empty file, or a table that checks nothing).
        ArgumentTypeError: ``path`` is not a string or path.
    """
    if not isinstance(path, (str, os.PathLike)) or isinstance(path, bytes):
        raise ArgumentTypeError("path", "the path of a policy TOML file (str or os.PathLike)", path)
    source = os.fspath(path)
    if not isinstance(source, str):
        raise ArgumentTypeError("path", "the path of a policy TOML file (str or os.PathLike)", path)
    try:
        data = Path(source).read_bytes()
    except FileNotFoundError:
        raise PolicyError(None, None, f"policy file not found: {source}") from None
    except OSError as exc:
        raise PolicyError(None, None, f"cannot read policy file {source}: {exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyError(None, None, f"not UTF-8 text: {exc}", source=source) from None
    return loads_policy(text, source=source)


def loads_policy(text: str, *, source: str = "<string>") -> Policy:
    """Parse and validate a policy from TOML text.

    Raises:
        PolicyError: Not TOML, a malformed rule, or no rules (see :func:`parse_policy`).
        ArgumentTypeError: ``text`` or ``source`` is not a string.
    """
    if not isinstance(text, str):
        raise ArgumentTypeError("text", "the policy's TOML text (str; decode bytes first)", text)
    _check_source(source)
    if tomllib is None:  # pragma: no cover - Python 3.10 without tomli
        raise PolicyError(None, None, "reading TOML on Python 3.10 needs 'tomli': pip install tomli", source=source)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(None, None, f"not valid TOML: {exc}", source=source) from None
    return parse_policy(data, source=source, digest=hashlib.sha256(text.encode("utf-8")).hexdigest())


def parse_policy(data: Mapping[str, Any], *, source: str = "<dict>", digest: str | None = None) -> Policy:
    """Validate an already-parsed policy (the dict ``tomllib`` returns).

    A policy must check something: a policy with no rules at all, or a section whose rules
    (with what it inherits from ``[default]``) check nothing — an empty table, or only
    ``measured_only = false`` — is refused, since it would pass every version.

    Raises:
        PolicyError: On anything but a well-formed policy; never another exception.
        ArgumentTypeError: ``source`` or ``digest`` is not a string.
    """
    _check_source(source)
    if digest is not None and not isinstance(digest, str):
        raise ArgumentTypeError("digest", "a hex SHA-256 digest (str) or None", digest)
    if not isinstance(data, Mapping):
        raise PolicyError(None, None, f"a policy must be a table, got {describe(data)}", source=source)
    for key in data:
        if key not in TOP_LEVEL_KEYS:
            raise PolicyError(key_name(key), None, "unknown table", valid_keys=TOP_LEVEL_KEYS, source=source)
    default = None
    if "default" in data:
        default = parse_rules(data["default"], "default", source)
    base = default or Rules()
    aliases = {
        name: base.merged(rules)
        for name, rules in parse_named_tables(data.get("aliases"), "aliases", source).items()
    }
    stages: dict[str, Rules] = {}
    for name, rules in parse_named_tables(data.get("stages"), "stages", source).items():
        canonical = name if name == WILDCARD else canonical_stage(name)
        if canonical is None:
            raise PolicyError(
                name, "stages", f"unknown stage; stages are {', '.join(STAGES)} (any case) or \"*\"", source=source
            )
        if canonical in stages:
            raise PolicyError(name, "stages", f"stage {canonical} is listed twice", source=source)
        section = f"stages.{canonical}"
        stages[canonical] = base.merged(Rules(**{**rule_fields(rules), "section": section}))
    for section_rules in (default, *aliases.values(), *stages.values()):
        if section_rules is not None:
            check_consistent(section_rules, source)
            check_not_empty(section_rules, source)
    if default is None and not aliases and not stages:
        raise PolicyError(
            None, None,
            "the policy has no rules, so it would pass every version: add a [default] table, or "
            "[aliases.NAME] / [stages.NAME] tables, with rules such as max_energy_kwh = 0.5",
            source=source,
        )
    if digest is None:
        try:
            canonical = json.dumps(data, sort_keys=True, default=str)
        except (TypeError, ValueError):
            canonical = repr(data)
        digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    return Policy(default, MappingProxyType(aliases), MappingProxyType(stages), source, digest)


def _check_source(source: Any) -> None:
    if not isinstance(source, str):
        raise ArgumentTypeError("source", "a description of where the policy came from (str)", source)
