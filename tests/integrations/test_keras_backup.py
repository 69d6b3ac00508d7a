"""The run a fit restored by Keras's BackupAndRestore resumes: the note kept in the backup folder."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

keras = pytest.importorskip("keras")

from mlflow_green.integrations._keras_backup import RUN_FILE, backup_folders, record_run, restored_run_id  # noqa: E402


def test_only_a_folder_keras_restores_from_names_the_earlier_run(tmp_path: Path) -> None:
    record_run([str(tmp_path / "new")], "run-1")  # created if need be
    assert json.loads((tmp_path / "new" / RUN_FILE).read_text()) == {"run_id": "run-1"}
    assert restored_run_id([str(tmp_path / "new")]) is None  # Keras has no backup there yet: nothing is restored
    (tmp_path / "new" / "training_metadata.json").write_text('{"epoch": 2, "batch": 0}')
    assert restored_run_id([str(tmp_path / "missing"), str(tmp_path / "new")]) == "run-1"


@pytest.mark.parametrize("note", ["{not json", '{"run_id": 7}', '["run-1"]', ""])
def test_a_damaged_note_is_no_earlier_run(tmp_path: Path, note: str) -> None:
    (tmp_path / "training_metadata.json").write_text('{"epoch": 2}')
    (tmp_path / RUN_FILE).write_text(note)
    assert restored_run_id([str(tmp_path)]) is None


def test_a_folder_that_cannot_be_written_is_a_warning_not_a_failure(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "backup").write_text("a file where the folder should be")  # fails for root too, unlike chmod
    with caplog.at_level(logging.WARNING):
        record_run([str(tmp_path / "backup")], "run-1")
    assert "green.resumed_from" in caplog.text


def test_the_fits_local_backup_folders_are_found_and_remote_ones_left_alone(tmp_path: Path) -> None:
    callbacks = [keras.callbacks.BackupAndRestore(str(tmp_path / "b")), keras.callbacks.BackupAndRestore("gs://bucket/b"),
                 keras.callbacks.History()]
    assert backup_folders(keras.callbacks.CallbackList(callbacks)) == [str(tmp_path / "b")]
    assert backup_folders() == []  # no fit running here
