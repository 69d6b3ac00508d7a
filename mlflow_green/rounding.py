"""Exact decimal rounding of figures: significant digits, thousands separators, the unit that fits.

The number half of :mod:`mlflow_green.formatting` (which documents the rules every surface
follows): a figure is rounded once, exactly, ties away from zero (as JavaScript's
``toPrecision`` does), and only then is its unit chosen, so ``999.96 Wh`` is ``1 kWh``.

Example:
    >>> significant(1234567.0), scaled(0.0123, MASS_UNITS_KG, "g")
    ('1,230,000', '12.3 g')
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Context, Decimal

MISSING = "—"
"""What an unknown (None, NaN, infinite) figure is shown as."""

Units = tuple[tuple[int, str], ...]
"""(power of ten of the unit in the input's unit, unit name), largest first."""
ENERGY_UNITS_KWH: Units = ((6, "GWh"), (3, "MWh"), (0, "kWh"), (-3, "Wh"), (-6, "mWh"), (-9, "µWh"))
MASS_UNITS_KG: Units = ((3, "t"), (0, "kg"), (-3, "g"), (-6, "mg"))
POWER_UNITS_W: Units = ((6, "MW"), (3, "kW"), (0, "W"), (-3, "mW"))
ENERGY_UNITS_J: Units = ((9, "GJ"), (6, "MJ"), (3, "kJ"), (0, "J"), (-3, "mJ"), (-6, "µJ"))
SIZE_UNITS_BYTES: Units = ((12, "TB"), (9, "GB"), (6, "MB"), (3, "kB"), (0, "B"))


def finite(value: float | int | None) -> bool:
    """True for a real, finite number (not None, a bool, NaN or infinite)."""
    return value is not None and not isinstance(value, bool) and math.isfinite(value)


def group_thousands(digits: str) -> str:
    """Thousands separators in the integer part of a plain decimal string (``-12345.6`` → ``-12,345.6``)."""
    sign = "-" if digits.startswith("-") else ""
    whole, dot, fraction = digits.lstrip("-").partition(".")
    groups = []
    while len(whole) > 3:
        groups.insert(0, whole[-3:])
        whole = whole[:-3]
    groups.insert(0, whole)
    return sign + ",".join(groups) + dot + fraction


def plain_decimal(value: Decimal) -> str:
    """A decimal without exponent and without trailing zeros (``1.20E+3`` → ``1200``, ``0.500`` → ``0.5``)."""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def round_significant(value: float, digits: int) -> Decimal:
    """``value`` rounded exactly to ``digits`` significant digits, ties away from zero."""
    return Context(prec=digits, rounding=ROUND_HALF_UP).plus(Decimal(value))


def significant(value: float, digits: int = 3) -> str:
    """``value`` rounded to ``digits`` significant digits, plain decimal, with thousands separators.

    Example:
        >>> significant(0.000123456), significant(1234567.0), significant(2.0), significant(0.125, 2)
        ('0.000123', '1,230,000', '2', '0.13')
    """
    if not finite(value):
        return MISSING
    if value == 0:
        return "0"
    return group_thousands(plain_decimal(round_significant(float(value), digits)))


def scaled(value: float | None, units: Units, zero_unit: str, digits: int = 3) -> str:
    """``value`` rounded to ``digits`` significant digits, in the largest of ``units`` that shows it as at least 1.

    The value is rounded once, exactly, and then only its decimal point moves (no float
    division, so the unit and the digits are the same in every language that rounds exactly).

    Example:
        >>> scaled(0.0123, MASS_UNITS_KG, "g"), scaled(0.0, MASS_UNITS_KG, "g"), scaled(None, MASS_UNITS_KG, "g")
        ('12.3 g', '0 g', '—')
    """
    if value is None or not finite(value):
        return MISSING
    value = float(value)
    if value == 0:
        return f"0 {zero_unit}"
    rounded = round_significant(value, digits)
    magnitude = rounded.adjusted()  # the power of ten of the first significant digit
    exponent, unit = next(((e, u) for e, u in units if magnitude >= e), units[-1])
    return f"{group_thousands(plain_decimal(rounded.scaleb(-exponent)))} {unit}"
