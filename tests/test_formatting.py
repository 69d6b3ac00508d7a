"""Figures for people: the shared test vectors (also run against the view's format.js in a browser)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlflow_green import formatting

VECTORS_PATH = Path(__file__).parent / "data" / "format_vectors.json"
SPECIAL = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def load_vectors() -> dict[str, list[tuple[list[Any], str]]]:
    """Every vector, with "NaN" / "Infinity" strings turned into those floats (JSON has no NaN)."""
    raw = json.loads(VECTORS_PATH.read_text(encoding="utf-8"))
    return {
        name: [([SPECIAL.get(a, a) if isinstance(a, str) and a in SPECIAL else a for a in args], expected)
               for args, expected in cases]
        for name, cases in raw.items()
        if not name.startswith("_")
    }


VECTORS = load_vectors()
CASES = [(name, args, expected) for name, cases in VECTORS.items() for args, expected in cases]


def test_every_public_function_has_vectors() -> None:
    public = {name for name in formatting.__all__ if callable(getattr(formatting, name)) and name not in ("scaled", "progress_line", "readable_figures", "Figure")}
    assert public == set(VECTORS)


@pytest.mark.parametrize(("name", "args", "expected"), CASES, ids=[f"{n}{a}" for n, a, _ in CASES])
def test_vector(name: str, args: list[Any], expected: str) -> None:
    assert getattr(formatting, name)(*args) == expected


@given(st.floats(min_value=1e-15, max_value=1e15))
def test_energy_uses_three_significant_digits_and_a_unit_between_1_and_1000(kwh: float) -> None:
    text = formatting.energy_kwh(kwh)
    figure, unit = text.split(" ")
    value = float(figure.replace(",", ""))
    digits = figure.replace(",", "").replace(".", "").lstrip("0")
    assert len(digits.rstrip("0")) <= 3
    assert unit in {u for _, u in formatting.ENERGY_UNITS_KWH}
    if unit not in ("GWh", "µWh"):
        assert 1 <= value < 1000
    scale = dict((u, 10.0**e) for e, u in formatting.ENERGY_UNITS_KWH)[unit]
    assert value * scale == pytest.approx(kwh, rel=5e-3)


@given(st.integers(min_value=-10**9, max_value=10**9))
def test_plural_agrees_with_its_count(n: int) -> None:
    text = formatting.plural(n, "rule")
    assert text.endswith(" rule" if n == 1 else " rules")
    assert int(text.split(" ")[0].replace(",", "")) == n


def test_a_figure_survives_keras_progress_bar_arithmetic_and_pickling() -> None:
    import pickle

    energy = formatting.readable_figures({"green/energy_kwh": 8.6143e-05})["green/energy_kwh"]
    total, count = energy * 1, 1          # keras.utils.Progbar: [v * value_base, value_base], then the mean
    assert f"{total / max(1, count):.4f}" == "86.1 mWh" and f"{abs(energy):.4e}" == "8.6143e-05"
    assert energy == 8.6143e-05 and isinstance(pickle.loads(pickle.dumps(energy)), float)
    assert f"{formatting.readable_figures({'green/power_w': 41.63})['green/power_w']:.4f}" == "41.6 W"


def test_no_message_writes_a_plural_as_s_in_parentheses() -> None:
    """One plural rule everywhere (``formatting.plural``): no ``write(s)`` or ``device(s)`` in any string
    of the package (docstrings aside) — the CLI's, the meters' reasons that ``doctor`` prints, the logs."""
    import ast
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    found = []
    for folder in ("mlflow_green", "integrations"):
        for path in sorted((root / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            docstrings = {
                id(node.body[0].value) for node in ast.walk(tree)
                if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)
            }
            for node in ast.walk(tree):
                if (isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
                        and re.search(r"[A-Za-z]\(s\)", node.value)):
                    found.append(f"{path.relative_to(root)}:{node.lineno}: {node.value.strip()[:60]!r}")
    assert found == []
