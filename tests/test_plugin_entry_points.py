"""Third-party meters installed as entry points are found once, cached, and found again after an install."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

PLUGIN = '''
from mlflow_green.plugins import hookimpl
from mlflow_green.testing import FakeMeter


class {cls}(FakeMeter):
    name = "{name}"

    def __init__(self):
        super().__init__({{"cpu:0": 1.0}}, name="{name}", priority=5)


@hookimpl
def register_meters(register):
    register({cls})
'''

PROBE = (
    "import json, sys\n"
    "from mlflow_green.plugins import meter_factories\n"
    "print(json.dumps({'meters': sorted(meter_factories()), 'metadata': 'importlib.metadata' in sys.modules}))\n"
)


def _install(site: Path, dist: str, module: str, meter: str) -> None:
    """What ``pip install`` leaves: a module and a ``*.dist-info`` folder with entry_points.txt."""
    (site / f"{module}.py").write_text(PLUGIN.format(cls=meter.title().replace("-", ""), name=meter))
    info = site / f"{dist}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[mlflow_green]\n{dist} = {module}\n")


def _probe(site: Path, cache: Path) -> dict:  # type: ignore[type-arg]
    env = {**os.environ, "PYTHONPATH": str(site), "MLFLOW_GREEN_CACHE_DIR": str(cache)}
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_entry_points_are_cached_until_a_package_is_installed(tmp_path: Path) -> None:
    site, cache = tmp_path / "site", tmp_path / "cache"
    site.mkdir()
    _install(site, "green_vendor_a", "green_vendor_a_plugin", "vendor-a")
    first = _probe(site, cache)
    assert "vendor-a" in first["meters"] and first["metadata"]  # discovered through importlib.metadata
    assert list(cache.glob("entry-points-*.json"))
    second = _probe(site, cache)
    assert second == {"meters": first["meters"], "metadata": False}  # from the cache: metadata never imported
    time.sleep(0.01)  # a distinct modification time on coarse file systems
    _install(site, "green_vendor_b", "green_vendor_b_plugin", "vendor-b")
    third = _probe(site, cache)
    assert {"vendor-a", "vendor-b"} <= set(third["meters"]) and third["metadata"]


def test_a_damaged_cache_or_a_broken_plugin_never_breaks_measurement(tmp_path: Path) -> None:
    site, cache = tmp_path / "site", tmp_path / "cache"
    site.mkdir()
    _install(site, "green_vendor_c", "green_vendor_c_plugin", "vendor-c")
    _probe(site, cache)
    for path in cache.glob("entry-points-*.json"):
        path.write_text("{not json")
    assert "vendor-c" in _probe(site, cache)["meters"]
    (site / "green_vendor_c_plugin.py").write_text("raise RuntimeError('broken plugin')\n")
    assert "estimate" in _probe(site, cache)["meters"]
