"""``mlflow-green regions``: exact codes first, substrings next, exit 2 with close matches for nothing."""

from __future__ import annotations

import json

from click.testing import CliRunner

from mlflow_green.cli import main


def regions(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["regions", *args])
    return result.exit_code, result.stdout, result.stderr


def test_an_exact_code_or_name_is_that_region_alone() -> None:
    for search in ("de", "DE", "DEU", " deu ", "Germany"):
        code, out, _ = regions(search)
        assert code == 0 and out.splitlines() == [out.splitlines()[0]] and out.startswith("DEU ")
        assert "Germany" in out and "Bangladesh" not in out and "Cape Verde" not in out
    code, out, _ = regions("us-ca")
    assert code == 0 and out.startswith("US-CA ") and len(out.splitlines()) == 1


def test_otherwise_every_region_containing_it() -> None:
    code, out, _ = regions("land")
    names = out.splitlines()
    assert code == 0 and len(names) > 5 and all("land" in line.lower() for line in names)
    assert any(line.startswith("FIN ") for line in names)


def test_intensity_is_written_as_everywhere_else() -> None:
    from mlflow_green import formatting
    from mlflow_green.carbon import offline_intensity

    _, out, _ = regions("fr")
    assert formatting.intensity_g_per_kwh(offline_intensity("FRA").intensity_g_per_kwh) in out


def test_nothing_found_exits_2_with_close_matches_and_what_to_type() -> None:
    code, out, err = regions("atlantis")
    assert code == 2 and out == ""
    assert "No region matches 'atlantis'" in err and "Closest:" in err and "mlflow-green regions" in err
    code, _, err = regions("Germanny")
    assert code == 2 and "DEU (Germany)" in err


def test_json() -> None:
    code, out, _ = regions("--json", "de")
    assert code == 0 and [row["region"] for row in json.loads(out)] == ["DEU"]
    code, out, _ = regions("--json", "atlantis")
    body = json.loads(out)
    assert code == 2 and body["type"] == "UnknownRegionError" and body["suggestions"]


def test_no_search_lists_them_all() -> None:
    code, out, _ = regions()
    assert code == 0 and len(out.splitlines()) > 250
