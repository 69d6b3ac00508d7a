"""The channel that hands a session back from a process spawned with a pickled copy (ddp_spawn): real processes."""

from __future__ import annotations

import copy
import multiprocessing
import os
import pickle
from pathlib import Path

import pytest

from mlflow_green.training.spawn_return import SpawnReturn


def _hand_back(pickled: bytes, cache: str, umask: int) -> None:
    """In a spawned process: the copy sends a stand-in for its session."""
    os.environ["MLFLOW_GREEN_CACHE_DIR"] = cache
    os.umask(umask)
    pickle.loads(pickled).send({"run_id": "from-rank-zero"})


def _spawned(back: SpawnReturn, cache: Path, umask: int = 0o022) -> None:
    process = multiprocessing.get_context("spawn").Process(target=_hand_back, args=(pickle.dumps(back), str(cache), umask))
    process.start()
    process.join(60)
    assert process.exitcode == 0


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MLFLOW_GREEN_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.mark.parametrize("umask", [0o022, 0o002], ids=["umask-022", "umask-002"])
def test_a_spawned_copy_hands_back_and_the_owner_reads_it_once(cache: Path, umask: int) -> None:
    back = SpawnReturn()
    _spawned(back, cache, umask)
    folder = cache / "spawned"
    assert folder.stat().st_mode & 0o777 == 0o700  # private whatever the umask: its files are unpickled
    assert back.receive(now=True) == {"run_id": "from-rank-zero"}
    assert list(folder.iterdir()) == [], "read and removed"
    assert back.receive(now=True) is None


def test_a_folder_others_can_write_in_is_not_read(cache: Path) -> None:
    back = SpawnReturn()
    _spawned(back, cache)
    (cache / "spawned").chmod(0o777)  # someone else could have swapped the file
    assert back.receive(now=True) is None
    assert len(list((cache / "spawned").iterdir())) == 1


def test_copies_in_the_owners_process_never_hand_back(cache: Path) -> None:
    back = SpawnReturn()
    for copied in (copy.deepcopy(back), pickle.loads(pickle.dumps(back))):
        assert copied.identity != back.identity and not copied.armed
        copied.send({"run_id": "copy"})
    assert not (cache / "spawned").exists()
    assert back.receive(now=True) is None

