"""The gate bypass and forgery set (tests/server/bypass_cases.py) against a green server on PostgreSQL."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "server"))
from bypass_cases import CASES, Setup, green_server  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def setup(postgres_uri: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    with green_server(tmp_path_factory.mktemp("bypass-pg"), backend_store_uri=postgres_uri) as running:
        yield running


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_gate_cannot_be_bypassed_on_postgres(setup: Setup, case: str) -> None:
    CASES[case](setup)
