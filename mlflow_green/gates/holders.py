"""The gate's memory of each alias's (and stage's) last holder, kept as a registered-model tag.

Deleting an alias and setting it again, or emptying a stage first, leaves nothing holding it —
and ``beat_current_by_percent`` would have nothing to beat. So whenever the gate lets a version
take a gated alias or stage, it writes the registered-model tag
``green.gate.holder.alias.<alias>`` (``green.gate.holder.stage.<Stage>``) with that version and
its quality per kWh; when nothing holds the alias now, the version it names is the one to beat.
With the server's gates on, clients cannot set or delete ``green.gate*`` tags.

Example:
    >>> value = holder_tag_value(version="3", run_id="abc", accuracy_per_kwh=4500.0)
    >>> value
    '{"accuracy_per_kwh":4500.0,"run_id":"abc","version":"3"}'
    >>> parse_holder(value)
    Holder(version='3', run_id='abc', accuracy_per_kwh=4500.0)
    >>> parse_holder('{"version": "3", "accuracy_per_kwh": "nan"}').accuracy_per_kwh
    nan
    >>> parse_holder("not json") is None
    True
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Holder:
    """A remembered holder: its version, source run and quality per kWh when the gate promoted it."""

    version: str
    run_id: str | None
    accuracy_per_kwh: float | None


def holder_tag_value(*, version: str, run_id: str | None, accuracy_per_kwh: float | None) -> str:
    """The tag's JSON value (a non-finite quality per kWh is kept as ``"nan"``/``"inf"``)."""
    value: float | str | None = None
    if accuracy_per_kwh is not None:
        value = float(accuracy_per_kwh) if math.isfinite(accuracy_per_kwh) else str(float(accuracy_per_kwh))
    return json.dumps({"version": str(version), "run_id": run_id, "accuracy_per_kwh": value},
                      sort_keys=True, separators=(",", ":"))


def parse_holder(text: str | None) -> Holder | None:
    """The holder a tag value names; None when absent or unreadable."""
    if not text:
        return None
    try:
        data = json.loads(text)
        version = str(data["version"])
        raw = data.get("accuracy_per_kwh")
        accuracy = None if raw is None else float(raw)
        run_id = data.get("run_id")
    except (ValueError, TypeError, KeyError):
        return None
    if not version.isdigit():
        return None
    return Holder(version, str(run_id) if run_id else None, accuracy)
