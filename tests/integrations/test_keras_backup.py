"""The run a fit restored by Keras's BackupAndRestore resumes: the note kept in the backup folder, also when the
interrupted fit's run was not created yet as it started (a fresh database, a slow server: its creation spooled)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from mlflow import MlflowClient

keras = pytest.importorskip("keras")

from mlflow_green.integrations._keras_backup import RUN_FILE, backup_folders, record_run, restored_run  # noqa: E402
from mlflow_green.integrations.keras import GreenCallback  # noqa: E402
from mlflow_green.record import schema  # noqa: E402


def test_only_a_folder_keras_restores_from_names_the_earlier_run(tmp_path: Path) -> None:
    record_run([str(tmp_path / "new")], "run-1")  # created if need be
    assert json.loads((tmp_path / "new" / RUN_FILE).read_text()) == {"run_id": "run-1"}
    assert restored_run([str(tmp_path / "new")]) is None  # Keras has no backup there yet: nothing is restored
    (tmp_path / "new" / "training_metadata.json").write_text('{"epoch": 2, "batch": 0}')
    assert restored_run([str(tmp_path / "missing"), str(tmp_path / "new")]) == "run-1"


def test_a_run_not_created_yet_is_noted_by_its_creation_token(tmp_path: Path) -> None:
    pending = {"token": "a" * 32, "experiment_id": "4", "experiment_name": None}
    record_run([str(tmp_path)], pending)
    assert json.loads((tmp_path / RUN_FILE).read_text()) == {"pending_run": pending}
    (tmp_path / "training_metadata.json").write_text('{"epoch": 2}')
    assert restored_run([str(tmp_path)]) == pending
    record_run([str(tmp_path)], None)  # a later fit that logs into no run: the note goes
    assert not (tmp_path / RUN_FILE).exists()


@pytest.mark.parametrize("note", ["{not json", '{"run_id": 7}', '["run-1"]', "", '{"pending_run": {"token": ""}}',
                                  '{"pending_run": "abc"}', '{"run_id": null, "pending_run": [1]}'])
def test_a_damaged_note_is_no_earlier_run(tmp_path: Path, note: str) -> None:
    (tmp_path / "training_metadata.json").write_text('{"epoch": 2}')
    (tmp_path / RUN_FILE).write_text(note)
    assert restored_run([str(tmp_path)]) is None


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


class _RaiseAtEpochEnd(keras.callbacks.Callback):
    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if epoch == 1:
            raise RuntimeError("callback bug")


def _fit(callbacks: list[keras.callbacks.Callback]) -> None:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x, y = (digits.data[:640] / 16.0).astype("float32"), digits.target[:640].astype("int64")
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(10)])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=4, batch_size=64, verbose=0, callbacks=callbacks)


def test_a_fit_restored_from_a_backup_written_before_its_run_existed_names_that_run(fresh_store: Path,
                                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    backup = fresh_store / "backup"
    first = GreenCallback()
    with pytest.raises(RuntimeError, match="callback bug"):
        _fit([keras.callbacks.BackupAndRestore(str(backup)), _RaiseAtEpochEnd(), first])
    note = json.loads((backup / RUN_FILE).read_text())
    assert "run_id" not in note and note["pending_run"]["token"], "the backup was noted before the run was created"
    assert first.session.run_id is not None, "the run was created by the fit's end"
    monkeypatch.setenv("MLFLOW_GREEN_START_TIMEOUT_S", "30")  # the restored fit looks the run up
    second = GreenCallback()
    _fit([keras.callbacks.BackupAndRestore(str(backup)), second])
    client = MlflowClient()
    resumed = client.get_run(second.session.run_id)
    assert second.session.run_id != first.session.run_id
    assert resumed.data.tags.get(schema.TAG_RESUMED_FROM) == first.session.run_id
    assert client.get_run(first.session.run_id).data.tags[schema.TAG_RUN_TOKEN] == note["pending_run"]["token"]
    assert [m.step for m in client.get_metric_history(second.session.run_id, schema.ENERGY_KWH)] == [2, 3]
    assert resumed.data.metrics[schema.ENERGY_KWH] * 3.6e6 == pytest.approx(second.session.fit_total.energy_j, rel=1e-9)


def test_a_backups_run_that_cannot_be_found_is_no_tag(fresh_store: Path, caplog: pytest.LogCaptureFixture,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_GREEN_START_TIMEOUT_S", "30")  # looked for, and not there
    backup = fresh_store / "backup"
    backup.mkdir()
    (backup / "training_metadata.json").write_text('{"epoch": 1, "batch": -1}')  # Keras's restore point, no weights: epoch 0 again
    record_run([str(backup)], {"token": "0" * 32, "experiment_id": "0", "experiment_name": None})  # never created
    cb = GreenCallback()
    with caplog.at_level(logging.WARNING):
        _fit([keras.callbacks.BackupAndRestore(str(backup)), cb])
    assert schema.TAG_RESUMED_FROM not in MlflowClient().get_run(cb.session.run_id).data.tags
    assert "cannot be found now" in caplog.text
