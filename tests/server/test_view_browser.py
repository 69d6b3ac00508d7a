"""The /green/ page driven in headless Chromium (Playwright) on a real
``mlflow server --app-name green --static-prefix /mlflow`` with a tmp sqlite store.

The leaderboard's rows appear in rank order, a header click re-orders them, "measured only"
filters, the scatter plot draws the Pareto frontier, a run link opens MLflow's run page, a run
named ``<script>alert(1)</script>`` is shown as text, the registered-models tab shows gate
status, and the page raises no console error (so the Content-Security-Policy blocks nothing
it needs). A screenshot is kept under ``$MLFLOW_GREEN_TEST_ARTIFACTS`` (default: ``test-artifacts/``).

Needs Chromium and Playwright's Python package (not Playwright's own browser download)::

    apt-get install chromium        # or set MLFLOW_GREEN_CHROMIUM=/path/to/chrome
    pip install playwright
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import pytest
from mlflow import MlflowClient

from mlflow_green.record import schema
from mlflow_green.testing.server import GreenServer

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # the browser fixture fails with what to install
    expect = sync_playwright = None  # type: ignore[assignment]

pytestmark = pytest.mark.slow

PREFIX = "/mlflow"
ACC = "val_accuracy"
XSS = "<script>alert(1)</script>"
ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
]
RUNS = (  # name, accuracy, energy kWh, estimated
    ("mobile", 0.90, 0.001, False),
    ("twin", 0.45, 0.0005, False),
    (XSS, 0.85, 0.002, False),  # dominated by mobile: less accurate and costlier
    ("cnn", 0.98, 0.004, True),
    ("zero", 0.90, 0.0, False),
)
RANK_ORDER = ["mobile", "twin", XSS, "cnn", "zero"]
BIDI = "invoice\u202eFDP.exe\u200b\u2066x\u2069\x1b[31m"
"""Reads "invoiceexe.PDF..." when rendered raw: a right-to-left override, zero-width space, isolates, an ANSI escape."""


def chromium_path() -> str:
    """The system Chromium, or a clear failure (never a skip: CI must run these tests)."""
    candidates = [os.environ.get("MLFLOW_GREEN_CHROMIUM", "")]
    candidates += [shutil.which(name) or "" for name in ("chromium", "chromium-browser", "google-chrome")]
    for candidate in candidates:
        if candidate and Path(candidate).exists():
            return candidate
    pytest.fail("Chromium not found: install it (apt-get install chromium) or set MLFLOW_GREEN_CHROMIUM "
                "to a Chrome/Chromium executable. The browser tests of the /green/ view need it.")


def artifacts_dir() -> Path:
    path = Path(os.environ.get("MLFLOW_GREEN_TEST_ARTIFACTS") or ROOT / "test-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GreenServer]:
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    workdir = tmp_path_factory.mktemp("view-browser")
    with GreenServer(workdir, extra_args=["--static-prefix", PREFIX], env=env) as running:
        yield running


@pytest.fixture(scope="module")
def data(server: GreenServer) -> dict[str, Any]:
    client = MlflowClient(server.tracking_uri)
    name = f"browser-{uuid.uuid4().hex[:6]}"
    experiment_id = client.create_experiment(name)
    other = f"{name} <img src=x onerror=alert(2)>"
    other_id = client.create_experiment(other)
    ids = {}
    for run_name, accuracy, energy, estimated in RUNS:
        run = client.create_run(experiment_id, run_name=run_name)
        client.log_metric(run.info.run_id, ACC, accuracy)
        client.log_metric(run.info.run_id, schema.ENERGY_KWH, energy)
        client.log_metric(run.info.run_id, schema.EMISSIONS_KG, energy * 0.4)
        client.log_metric(run.info.run_id, schema.MODEL_PARAMS, 151306 if run_name == "cnn" else 3946)
        client.set_tag(run.info.run_id, schema.TAG_QUALITY_METRIC, ACC)
        client.set_tag(run.info.run_id, schema.TAG_ESTIMATED, str(estimated).lower())
        client.set_tag(run.info.run_id, schema.TAG_COMPRESSION, "int8" if run_name == "twin" else "none")
        client.set_terminated(run.info.run_id)
        ids[run_name] = run.info.run_id
    run = client.create_run(other_id, run_name="other-run")
    client.log_metric(run.info.run_id, ACC, 0.5)
    client.log_metric(run.info.run_id, schema.ENERGY_KWH, 0.01)
    model = f"{name}-model"
    client.create_registered_model(model)
    for run_name in ("cnn", "mobile", XSS):
        client.create_model_version(model, source=f"runs:/{ids[run_name]}/model", run_id=ids[run_name])
    client.set_registered_model_alias(model, "champion", "2")
    client.set_model_version_tag(model, "1", schema.TAG_GATE, "failed")
    client.set_model_version_tag(model, "1", schema.TAG_GATE_REASONS, "estimated energy; 0.004 kWh > 0.002 kWh")
    client.set_model_version_tag(model, "2", schema.TAG_GATE, "passed")
    spoof_id = client.create_experiment(f"{name}-spoof{BIDI}")
    spoof = client.create_run(spoof_id, run_name=BIDI)
    client.log_metric(spoof.info.run_id, ACC, 0.9)
    client.log_metric(spoof.info.run_id, schema.ENERGY_KWH, 0.001)
    client.set_tag(spoof.info.run_id, schema.TAG_QUALITY_METRIC, ACC)
    spoof_model = f"{name}-{BIDI}-it's \"quoted\""
    client.create_registered_model(spoof_model)
    client.create_model_version(spoof_model, source=f"runs:/{spoof.info.run_id}/model", run_id=spoof.info.run_id)
    return {"experiment_id": experiment_id, "other": other, "name": name, "ids": ids, "model": model,
            "spoof_experiment_id": spoof_id, "spoof_model": spoof_model}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = chromium_path()
    if sync_playwright is None:
        pytest.fail("The browser tests need Playwright's Python package: pip install playwright "
                    "(no `playwright install` needed: they use the system Chromium).")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


class Page:
    """A browser tab on the view that records dialogs and console errors."""

    def __init__(self, browser: Any, url: str) -> None:
        self.page = browser.new_page(viewport={"width": 1400, "height": 1000})
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.goto(url)
        self.page.wait_for_selector("body[data-ready=true]", timeout=30_000)

    def run_names(self, table: str = "#runs-table") -> list[str]:
        return self.page.locator(f"{table} tbody td[data-key=run_name]").all_inner_texts()

    def close(self) -> None:
        self.page.close()


@pytest.fixture()
def view(browser: Any, server: GreenServer, data: dict[str, Any]) -> Iterator[Page]:
    page = Page(browser, f"{server.url}{PREFIX}/green/?experiment_ids={data['experiment_id']}")
    yield page
    assert page.errors == [], f"console errors: {page.errors}"
    assert page.dialogs == [], f"a dialog opened (script ran?): {page.dialogs}"
    page.close()


def test_rows_appear_in_rank_order_and_a_screenshot_is_kept(view: Page) -> None:
    assert view.run_names() == RANK_ORDER
    headers = view.page.locator("#runs-table thead th").all_inner_texts()
    assert "Experiment" not in " ".join(headers)  # one experiment: no column for it
    ranks = view.page.locator("#runs-table tbody td[data-key=rank]").all_inner_texts()
    assert ranks == ["1", "1", "3", "4", "—"]
    assert view.page.locator("#runs-table th[data-key=rank]").get_attribute("aria-sort") == "ascending"
    reason = view.page.locator("#runs-table tbody tr.unranked td[data-key=reason]").inner_text()
    assert reason == "energy is 0"
    status = view.page.locator("#run-status").inner_text()
    assert status.startswith("4 ranked, 1 not ranked, 3 on the Pareto frontier")
    shot = artifacts_dir() / "view-browser.png"
    view.page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000


def test_a_header_click_reorders_the_rows(view: Page) -> None:
    header = view.page.locator("#runs-table th[data-key=energy_kwh]")
    header.locator("button").click()
    assert header.get_attribute("aria-sort") == "ascending"
    assert view.run_names() == ["zero", "twin", "mobile", XSS, "cnn"]
    assert view.page.locator("#runs-table th[data-key=rank]").get_attribute("aria-sort") is None
    header.locator("button").click()
    assert header.get_attribute("aria-sort") == "descending"
    assert view.run_names() == ["cnn", XSS, "mobile", "twin", "zero"]
    view.page.locator("#runs-table th[data-key=quality] button").click()  # quality: best first on first click
    assert view.run_names()[0] == "cnn" and view.run_names()[-2:] == [XSS, "twin"]


def test_a_quality_metric_nobody_logged_gets_a_hint_and_suggestions(view: Page) -> None:
    view.page.locator("#metric").fill("test_accuracy")
    view.page.locator("#rank-button").click()
    status = view.page.locator("#run-status")
    expect(status).to_contain_text("No run has that quality metric logged")
    expect(status).to_contain_text(f"(logged here: {ACC})")
    assert [o.get_attribute("value") for o in view.page.locator("#metric-options option").all()] == [ACC]
    assert "metric=test_accuracy" in view.page.url


def test_measured_only_filters_out_estimates(view: Page) -> None:
    view.page.locator("#measured-only").check()
    expect(view.page.locator("#run-status")).to_contain_text("measured only")
    assert view.run_names() == ["mobile", "twin", XSS, "zero"]
    assert "measured_only=true" in view.page.url


def test_the_scatter_plot_draws_the_runs_and_the_pareto_frontier(view: Page) -> None:
    plot = view.page.locator("#run-plot")
    assert plot.locator("circle.dot").count() == 4          # the zero-energy run cannot be drawn
    assert plot.locator("circle.dot.pareto").count() == 3   # twin, mobile, cnn; the script-named run is dominated
    assert plot.locator("circle.dot.estimated").count() == 1
    assert plot.locator("path.frontier").count() == 1
    assert (plot.locator("text.axis-label").first.text_content() or "").startswith("Energy")
    titles = plot.locator("circle title").all_text_contents()
    assert any(t.startswith(XSS) for t in titles)


def test_a_script_named_run_is_shown_as_text(view: Page) -> None:
    cell = view.page.locator("#runs-table tbody tr").nth(2).locator("td[data-key=run_name]")
    assert cell.inner_text() == XSS
    assert view.page.locator("main script").count() == 0  # and no dialog opened (checked by the fixture)


def test_the_experiment_chooser_ranks_what_is_checked(view: Page, data: dict[str, Any]) -> None:
    chooser = view.page.locator("#experiment-list")
    assert chooser.get_by_label(data["name"], exact=True).is_checked()
    chooser.get_by_label(data["other"], exact=True).check()  # a name with markup is a label, as text
    expect(view.page.locator("#runs-table tbody tr")).to_have_count(6)
    assert "other-run" in view.run_names()
    experiments = set(view.page.locator("#runs-table tbody td[data-key=experiment]").all_inner_texts())
    assert experiments == {data["name"], data["other"]}
    assert view.page.locator("img").count() == 0
    chooser.get_by_label(data["name"], exact=True).uncheck()
    chooser.get_by_label(data["other"], exact=True).uncheck()
    expect(view.page.locator("#run-status")).to_have_text("Choose one or more experiments.")
    assert view.run_names() == []


def test_a_run_link_opens_the_mlflow_run_page(view: Page, data: dict[str, Any], server: GreenServer) -> None:
    run_id = data["ids"]["mobile"]
    link = view.page.locator("#runs-table a.run-link", has_text="mobile").first
    expected = f"{server.url}{PREFIX}/#/experiments/{data['experiment_id']}/runs/{run_id}"
    assert urljoin(view.page.url, link.get_attribute("href")) == expected
    link.click()
    view.page.wait_for_url(expected)
    # MLflow's own UI renders the run page (its React app, served under the same prefix).
    view.page.get_by_text(run_id[:8], exact=False).first.wait_for(timeout=30_000)
    view.errors.clear()  # MLflow's UI logs its own console noise; ours was checked before leaving


def test_registered_models_tab_shows_each_versions_energy_and_gate(browser: Any, server: GreenServer,
                                                                   data: dict[str, Any]) -> None:
    page = Page(browser, f"{server.url}{PREFIX}/green/?tab=models&model={data['model']}")
    try:
        expect(page.page.locator("#models-table tbody tr")).to_have_count(3)
        assert page.page.locator("#panel-runs").is_hidden()
        rows = page.page.locator("#models-table tbody tr")
        versions = page.page.locator("#models-table tbody td[data-key=model_version]").all_inner_texts()
        assert versions == ["v2", "v3", "v1"]
        gates = page.page.locator("#models-table tbody td[data-key=gate]").all_inner_texts()
        assert gates == ["passed", "—", "failed"]
        assert rows.nth(0).locator("td[data-key=aliases]").inner_text() == "@champion"
        reasons = rows.nth(2).locator("td[data-key=gate_reasons]").inner_text()
        assert reasons == "estimated energy; 0.004 kWh > 0.002 kWh"
        assert rows.nth(1).locator("td[data-key=run_name]").inner_text() == XSS
        assert "est." in rows.nth(2).locator("td[data-key=energy_kwh]").inner_text()
        href = urljoin(page.page.url, rows.nth(0).locator("a.version-link").get_attribute("href"))
        assert href == f"{server.url}{PREFIX}/#/models/{data['model']}/versions/2"
        page.page.screenshot(path=str(artifacts_dir() / "view-browser-models.png"), full_page=True)
        assert page.errors == [] and page.dialogs == []
    finally:
        page.close()


VECTORS = ROOT / "tests" / "data" / "format_vectors.json"
JS_NAMES = {  # mlflow_green.formatting name -> window.GreenFormat name
    "energy_kwh": "energyKwh", "energy_j": "energyJ", "emissions_kg": "emissionsKg", "power_w": "powerW",
    "intensity_g_per_kwh": "intensityGPerKwh", "size_bytes": "sizeBytes", "ratio": "ratio", "number": "number",
    "significant": "significant", "count": "count", "plural": "plural",
}
FORMAT_IN_PAGE = """([vectors, names]) => {
  const special = { NaN: NaN, Infinity: Infinity, "-Infinity": -Infinity };
  const out = [];
  for (const [name, cases] of Object.entries(vectors)) {
    if (name.startsWith("_")) continue;
    for (const [args, expected] of cases) {
      const values = args.map((a) => (typeof a === "string" && a in special ? special[a] : a));
      out.push([name, JSON.stringify(args), window.GreenFormat[names[name]](...values), expected]);
    }
  }
  return out;
}"""


def test_the_page_formats_figures_with_the_shared_vectors(view: Page) -> None:
    """window.GreenFormat in Chromium writes every shared test vector as mlflow_green.formatting does."""
    import json

    from mlflow_green import formatting

    vectors = json.loads(VECTORS.read_text(encoding="utf-8"))
    results = view.page.evaluate(FORMAT_IN_PAGE, [vectors, JS_NAMES])
    assert len(results) == sum(len(v) for k, v in vectors.items() if not k.startswith("_")) > 50
    wrong = [(name, args, got, expected) for name, args, got, expected in results if got != expected]
    assert wrong == []
    # and the table uses it: the cells are what the CLI prints for the same values
    cells = view.page.locator("#runs-table tbody td[data-key=energy_kwh]").all_inner_texts()
    expected_cells = [formatting.energy_kwh(e) for n in RANK_ORDER for name, _, e, _ in RUNS if name == n]
    assert [c.split(" est.")[0].strip() for c in cells] == expected_cells
    emissions = view.page.locator("#runs-table tbody td[data-key=emissions_kg]").all_inner_texts()
    assert emissions[0] == formatting.emissions_kg(0.001 * 0.4) == "400 mg CO2e"


def test_bidi_and_control_characters_are_shown_escaped(browser: Any, server: GreenServer, data: dict[str, Any]) -> None:
    """Names are shown with each hidden character written as an escape, exactly as the CLI shows them."""
    from mlflow_green.text import visible

    shown = visible(BIDI)
    assert shown == "invoice\\u202eFDP.exe\\u200b\\u2066x\\u2069\\u001b[31m"
    page = Page(browser, f"{server.url}{PREFIX}/green/?experiment_ids={data['spoof_experiment_id']}")
    try:
        assert page.run_names() == [shown]
        label = page.page.locator("#experiment-list label", has_text="-spoof").inner_text()
        assert label.strip().endswith("-spoof" + shown)
        page.page.locator("#tab-models").click()
        select = page.page.locator("#model-select")
        option = select.locator("option", has_text="quoted")
        assert option.inner_text().strip() == visible(data["spoof_model"])
        select.select_option(value=data["spoof_model"])  # the value is the real name: it ranks
        expect(page.page.locator("#models-table tbody tr")).to_have_count(1)
        assert page.page.locator("#models-table tbody td[data-key=run_name]").inner_text() == shown
        assert page.errors == [] and page.dialogs == []
    finally:
        page.close()
