"""The default spool folder on machines where the user has no home folder, or an unwritable one.

Such users are common: a container started with ``--user 12345`` has no passwd entry and often no
``HOME``, so ``Path.home()`` raises. The spool folder (like the cache folder) then falls back to the
temp folder instead of raising into training or into ``mlflow-green sync``. Each case runs in a real
subprocess with ``HOME`` unset and ``pwd.getpwuid`` failing as it does for a uid without a passwd
entry (a real unprivileged uid cannot run this interpreter when it lives in root's home folder).
An unwritable home is a ``HOME`` that is a file: no user, root included, can create folders in it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

_NO_PASSWD_ENTRY = """
import pwd
def _getpwuid(uid):
    raise KeyError(f"getpwuid(): uid not found: {uid}")
pwd.getpwuid = _getpwuid
"""


def _run_homeless(code: str, tmp: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter as a user with no home folder (see the module docstring).

    The child's temp folder is ``tmp``: whatever it writes stays in the test's folder.
    """
    site = tmp / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(_NO_PASSWD_ENTRY)
    child_env = {k: v for k, v in os.environ.items()
                 if k not in {"HOME", "XDG_CACHE_HOME"} and not k.startswith("MLFLOW_GREEN_")}
    child_env.update(TMPDIR=str(tmp), PYTHONPATH=os.pathsep.join([str(site), *sys.path]), **env)
    return subprocess.run([sys.executable, "-c", code], env=child_env, cwd=tmp, capture_output=True, text=True,
                          timeout=300)


def test_without_a_home_folder_the_spool_and_the_cache_go_under_the_temp_folder(tmp_path: Path) -> None:
    done = _run_homeless(
        "import json; from pathlib import Path\n"
        "try:\n    Path.home(); home = 'found'\nexcept RuntimeError:\n    home = 'none'\n"
        "from mlflow_green.record.spool_format import default_spool_dir\n"
        "from mlflow_green.cache_dir import cache_dir\n"
        "print(json.dumps({'home': home, 'spool': str(default_spool_dir()), 'cache': str(cache_dir())}))",
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    uid = os.getuid()
    assert answer["home"] == "none"  # the condition under test: Path.home() raises here
    assert answer["spool"] == str(tmp_path / f"mlflow-green-{uid}" / "spool")
    assert answer["cache"] == str(tmp_path / f"mlflow-green-{uid}")


def test_the_configured_spool_folder_wins_without_a_home_folder(tmp_path: Path) -> None:
    done = _run_homeless(
        "from mlflow_green.record.spool_format import default_spool_dir; print(default_spool_dir())",
        tmp_path, MLFLOW_GREEN_SPOOL_DIR=str(tmp_path / "mine"),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(tmp_path / "mine")


@pytest.mark.slow
def test_track_and_sync_work_for_a_user_whose_home_folder_cannot_be_written(tmp_path: Path) -> None:
    """A measured block is logged, and ``mlflow-green sync`` runs, when the home folder is unusable.

    (With no home folder at all MLflow itself cannot be imported — 2.22 and 3.x evaluate
    ``Path.home()`` in ``mlflow.environment_variables`` — so that case is the first test's.)
    """
    (tmp_path / "home-is-a-file").write_text("not a folder")
    env = {"HOME": str(tmp_path / "home-is-a-file")}
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    code = f"""
import json, mlflow, mlflow_green
from mlflow import MlflowClient
from mlflow_green.testing import FakeMeter
from mlflow_green.cli import main
mlflow.set_tracking_uri({store!r})
with mlflow_green.track(meters=[FakeMeter({{"cpu:0": 5.0}})]) as t:
    pass
run = MlflowClient().get_run(t.run_id)
try:
    main(["sync"], standalone_mode=False)
    sync = "ok"
except SystemExit as exc:
    sync = f"exit {{exc.code}}"
print(json.dumps({{"energy": run.data.metrics.get("green/energy_kwh"), "status": run.info.status, "sync": sync}}))
"""
    done = _run_homeless(code, tmp_path, **env)
    assert done.returncode == 0, done.stderr[-3000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["status"] == "FINISHED" and answer["energy"] > 0
    assert answer["sync"] == "ok"
    assert "Traceback" not in done.stderr
