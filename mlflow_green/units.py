"""Unit conversions. Everything inside mlflow-green is SI (J, W, s); kWh only at the MLflow boundary,
and times as ISO 8601 UTC only in the reports."""

from __future__ import annotations

import datetime as _dt

J_PER_KWH = 3.6e6
"""Joules in one kilowatt-hour."""

G_PER_KG = 1000.0


def joules_to_kwh(energy_j: float) -> float:
    """Convert joules to kilowatt-hours.

    Example:
        >>> joules_to_kwh(3.6e6)
        1.0
    """
    return energy_j / J_PER_KWH


def kwh_to_joules(energy_kwh: float) -> float:
    """Convert kilowatt-hours to joules.

    Example:
        >>> kwh_to_joules(0.5)
        1800000.0
    """
    return energy_kwh * J_PER_KWH


def unix_s_to_iso_utc(unix_s: float | None) -> str | None:
    """A time in seconds since the epoch as ISO 8601 UTC to the second, as the reports write it
    (None or 0, i.e. unknown, gives None).

    Example:
        >>> unix_s_to_iso_utc(1.7e9), unix_s_to_iso_utc(None)
        ('2023-11-14T22:13:20+00:00', None)
    """
    if not unix_s:
        return None
    return _dt.datetime.fromtimestamp(unix_s, _dt.timezone.utc).isoformat(timespec="seconds")


def now_iso_utc() -> str:
    """The current time as :func:`unix_s_to_iso_utc` writes it."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
