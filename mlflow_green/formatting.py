"""One way to write a figure for people, shared by every surface: the CLI (``rank``, ``gate``,
``doctor``, ``regions``), the callbacks' progress-bar lines and the view (whose
``static/format.js`` implements the same rules, checked against the same test vectors,
``tests/data/format_vectors.json``, in a real browser).

The rules:

- Energy, emissions, power and joules: three significant digits in the unit that puts the
  figure between 1 and 1000 (``73.3 mWh``, ``1.2 kWh``, ``27.3 g CO2e``, ``41.6 W``); trailing
  zeros are dropped (``1.2``, not ``1.20``); zero is ``0 Wh`` / ``0 g CO2e`` / ``0 W`` / ``0 J``.
- Rounding is decimal and exact, ties away from zero (as JavaScript's ``toPrecision`` does), and
  the unit is chosen after rounding (``999.96 Wh`` is ``1 kWh``, not ``1000 Wh``).
- Ratios (quality per kWh): whole numbers with thousands separators from 100 up (``35,311``),
  three significant digits below (``45.2``).
- Counts: thousands separators; a noun agrees with its count (``1 rule``, ``2 rules``, ``0 runs``).
- Unknown, NaN or infinite: ``—``.

Rounding and unit scaling themselves are :mod:`mlflow_green.rounding`.

Example:
    >>> energy_kwh(7.331e-05), emissions_kg(0.0273), ratio(35310.6), plural(1, "rule"), plural(2, "rule")
    ('73.3 mWh', '27.3 g CO2e', '35,311', '1 rule', '2 rules')
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from decimal import ROUND_HALF_UP, Decimal

from mlflow_green.rounding import (
    ENERGY_UNITS_J,
    ENERGY_UNITS_KWH,
    MASS_UNITS_KG,
    MISSING,
    POWER_UNITS_W,
    SIZE_UNITS_BYTES,
    Units,  # noqa: F401  (the unit tables' type, importable from here as before)
    finite,
    group_thousands,
    plain_decimal,
    scaled,
    significant,
)

CO2E = "CO2e"

__all__ = [
    "MISSING", "Figure", "count", "emissions_kg", "energy_j", "energy_kwh", "intensity_g_per_kwh", "number", "plural",
    "power_w", "progress_line", "ratio", "readable_figures", "scaled", "significant", "size_bytes",
]


def energy_kwh(kwh: float | None) -> str:
    """Energy given in kWh, e.g. ``73.3 mWh``, ``26.9 Wh``, ``1.2 kWh``.

    Example:
        >>> energy_kwh(7.331e-05), energy_kwh(0.0269), energy_kwh(1.2), energy_kwh(0.0), energy_kwh(None)
        ('73.3 mWh', '26.9 Wh', '1.2 kWh', '0 Wh', '—')
    """
    return scaled(kwh, ENERGY_UNITS_KWH, "Wh")


def energy_j(joules: float | None) -> str:
    """Energy given in joules (per prediction, per sample), e.g. ``4.2 mJ``, ``12.5 J``.

    Example:
        >>> energy_j(0.0042), energy_j(12.5), energy_j(36000.0)
        ('4.2 mJ', '12.5 J', '36 kJ')
    """
    return scaled(joules, ENERGY_UNITS_J, "J")


def emissions_kg(kg: float | None) -> str:
    """Emissions given in kg CO2e, e.g. ``27.3 g CO2e``.

    Example:
        >>> emissions_kg(0.0273), emissions_kg(2.5), emissions_kg(4e-07)
        ('27.3 g CO2e', '2.5 kg CO2e', '0.4 mg CO2e')
    """
    text = scaled(kg, MASS_UNITS_KG, "g")
    return text if text == MISSING else f"{text} {CO2E}"


def power_w(watts: float | None) -> str:
    """Power given in W, e.g. ``41.6 W``, ``1.5 kW``.

    Example:
        >>> power_w(41.63), power_w(1500.0), power_w(0.25)
        ('41.6 W', '1.5 kW', '250 mW')
    """
    return scaled(watts, POWER_UNITS_W, "W")


def intensity_g_per_kwh(grams: float | None) -> str:
    """Carbon intensity given in g CO2e per kWh, e.g. ``56 g CO2e/kWh``.

    Example:
        >>> intensity_g_per_kwh(56.04), intensity_g_per_kwh(475.3)
        ('56 g CO2e/kWh', '475 g CO2e/kWh')
    """
    if grams is None or not finite(grams):
        return MISSING
    return f"{significant(grams)} g {CO2E}/kWh"


def size_bytes(size: float | None) -> str:
    """A size in bytes, decimal units (``15.6 kB``, ``1.2 MB``).

    Example:
        >>> size_bytes(15616), size_bytes(1_200_000), size_bytes(512)
        ('15.6 kB', '1.2 MB', '512 B')
    """
    return scaled(size, SIZE_UNITS_BYTES, "B")


def ratio(value: float | None) -> str:
    """A ratio such as quality per kWh: whole with separators from 100 up, three significant digits below.

    Example:
        >>> ratio(35310.6), ratio(150.5), ratio(12.345), ratio(None)
        ('35,311', '151', '12.3', '—')
    """
    if value is None or not finite(value):
        return MISSING
    value = float(value)
    if abs(value) >= 100:
        return group_thousands(plain_decimal(Decimal(value).quantize(Decimal(1), rounding=ROUND_HALF_UP)))
    return significant(value)


def number(value: float | None, digits: int = 4) -> str:
    """A plain figure (a quality metric such as accuracy) to ``digits`` significant digits.

    Example:
        >>> number(0.98234), number(123456.0), number(None)
        ('0.9823', '123,500', '—')
    """
    if value is None or not finite(value):
        return MISSING
    return significant(float(value), digits)


def count(n: int | None) -> str:
    """A count with thousands separators.

    Example:
        >>> count(1234567), count(None)
        ('1,234,567', '—')
    """
    if n is None or isinstance(n, bool) or not math.isfinite(n):
        return MISSING
    return group_thousands(str(int(n)))


def plural(n: int, singular: str, plural_form: str | None = None) -> str:
    """``n`` and the noun that agrees with it: ``1 rule``, ``2 rules``, ``0 runs``, ``1,200 runs``.

    Args:
        n: The count.
        singular: The noun for one.
        plural_form: The noun for any other count (default: ``singular + "s"``).

    Example:
        >>> plural(1, "rule"), plural(0, "run"), plural(3, "process", "processes")
        ('1 rule', '0 runs', '3 processes')
    """
    word = singular if int(n) == 1 else (plural_form if plural_form is not None else singular + "s")
    return f"{count(n)} {word}"



def progress_line(where: str, kwh: float | None, watts: float | None = None, kg: float | None = None) -> str:
    """The line a callback shows per window next to the framework's progress bar.

    Args:
        where: The window, e.g. ``epoch 1`` or ``step 500``.
        kwh: Energy so far (running total, kWh).
        watts: Mean power of the window (W).
        kg: Emissions so far (kg CO2e).

    Example:
        >>> progress_line("epoch 1", 8.6143e-05, 41.63, 3.2e-05)
        'mlflow-green · epoch 1: 86.1 mWh so far · 41.6 W · 32 mg CO2e'
    """
    parts = [f"mlflow-green · {where}: {energy_kwh(kwh)} so far"]
    if watts is not None:
        parts.append(power_w(watts))
    if kg is not None:
        parts.append(emissions_kg(kg))
    return " · ".join(parts)


class Figure(float):
    """A number that frameworks format as readable text: it is the float (``History``, JSON, MLflow
    see the value in the schema's unit), but any format spec writes it through ``writer``.

    Keras's progress bar formats every epoch log with ``{:.4f}`` (``{:.4e}`` under 1e-3), which
    turns 86 mWh into ``8.6143e-05``; given a Figure it prints ``86.1 mWh``. Arithmetic the
    progress bar does on it (``v * 1``, ``v / 1``, sums) keeps it a Figure; pickling gives a float.

    Example:
        >>> energy = Figure(8.6143e-05, energy_kwh)
        >>> f"{energy:.4e}", energy == 8.6143e-05, f"{energy / 1:.4f}"
        ('86.1 mWh', True, '86.1 mWh')
    """

    _writer: Callable[[float], str]

    def __new__(cls, value: float, writer: Callable[[float], str]) -> Figure:
        figure = super().__new__(cls, value)
        figure._writer = writer
        return figure

    def __format__(self, spec: str) -> str:
        return self._writer(float(self))

    def __reduce__(self) -> tuple[type, tuple[float]]:
        return (float, (float(self),))

    def _same(self, value: float) -> Figure:
        return Figure(value, self._writer)

    def __mul__(self, other: float) -> Figure:  # type: ignore[override]
        return self._same(float(self) * float(other))

    __rmul__ = __mul__

    def __truediv__(self, other: float) -> Figure:  # type: ignore[override]
        return self._same(float(self) / float(other))

    def __add__(self, other: float) -> Figure:  # type: ignore[override]
        return self._same(float(self) + float(other))

    __radd__ = __add__


_SUFFIX_WRITERS: tuple[tuple[str, Callable[[float], str]], ...] = (
    ("_kwh", energy_kwh), ("_kg", emissions_kg), ("_w", power_w), ("_j", energy_j),
)
_WRITER_OF: dict[str, Callable[[float], str]] = {}  # per key seen (the schema's few), worked out once


def _writer_for(key: str) -> Callable[[float], str]:
    writer = next((w for suffix, w in _SUFFIX_WRITERS if key.endswith(suffix)), number)
    if len(_WRITER_OF) < 256:
        _WRITER_OF[key] = writer
    return writer


def readable_figures(figures: Mapping[str, float]) -> dict[str, Figure]:
    """Schema-keyed figures (``green/energy_kwh``, ``green/emissions_kg``, ``green/power_w`` …) as
    :class:`Figure` values that write themselves in the unit their key names."""
    writers = _WRITER_OF
    return {key: Figure(value, writers.get(key) or _writer_for(key)) for key, value in figures.items()}
