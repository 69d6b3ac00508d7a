"""Keras's ``BackupAndRestore``: which run a restored fit resumes (``green.resumed_from``).

A fit interrupted with ``keras.callbacks.BackupAndRestore(backup_dir)`` in its callbacks is run
again (often by a new process) and Keras restores it from the backup: its weights, and the epoch to
go on from. The new fit logs into a new run (the interrupted one ended FAILED or KILLED) whose totals
start at zero, like a Lightning fit resumed from another run's checkpoint; what links the two is the
tag ``green.resumed_from``. For that, the callback keeps the id of the run it logs into in the
backup folder (``mlflow_green.json``, beside Keras's ``training_metadata.json``), and a fit that
Keras restores from a backup reads it.

A fit whose run MLflow had not created yet when it started (a fresh database, a slow server: the
creation is spooled) notes the run's creation token instead (``{"pending_run": {"token": …}}``), by
which the restored fit finds the run once created (tagged ``green.run_token``), as a Lightning
checkpoint written before its run existed does.

Keras deletes the folder when the fit completes (``delete_checkpoint=True``, the default), the file
with it. A backup folder on a remote filesystem (``gs://…``) is left alone: no tag then.

Example:
    >>> import tempfile, pathlib
    >>> folder = tempfile.mkdtemp()
    >>> record_run([folder], "3f2a")
    >>> restored_run([folder]) is None  # no backup of Keras's there: nothing restored
    True
    >>> _ = (pathlib.Path(folder) / "training_metadata.json").write_text('{"epoch": 3}')
    >>> restored_run([folder])
    '3f2a'
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterable, Sequence
from typing import Any

from mlflow_green.integrations._keras_frames import caller_frame
from mlflow_green.training.state import pending_run_of

logger = logging.getLogger(__name__)

RUN_FILE = "mlflow_green.json"
"""What the callback keeps in a backup folder: ``{"run_id": …}``, or ``{"pending_run": …}`` before the run exists."""
PendingRun = dict[str, str | None]
_KERAS_METADATA = "training_metadata.json"  # BackupAndRestore's: present when there is a backup to restore


def backup_folders(callbacks: Any = None) -> list[str]:
    """The local backup folders of the ``BackupAndRestore`` callbacks in a fit's callback list (default:
    the running ``fit``'s)."""
    try:
        import keras

        if callbacks is None:
            frame = caller_frame("fit")
            callbacks = frame.f_locals.get("callbacks") if frame is not None else None
        listed = getattr(callbacks, "callbacks", callbacks) or []
        folders = [str(cb.backup_dir) for cb in listed if isinstance(cb, keras.callbacks.BackupAndRestore)]
    except Exception as exc:  # measurement never breaks training
        logger.debug("mlflow-green: could not look for BackupAndRestore: %r", exc)
        return []
    return [folder for folder in folders if "://" not in folder]


def restored_run(folders: Iterable[str]) -> str | PendingRun | None:
    """The run of the fit that wrote the backup Keras restores from: its id, or its ``pending_run`` (token and
    experiment) if it was not created when the backup was written (None: no backup, or not ours)."""
    for folder in folders:
        if not os.path.exists(os.path.join(folder, _KERAS_METADATA)):
            continue
        try:
            with open(os.path.join(folder, RUN_FILE), encoding="utf-8") as file:
                note = json.load(file)
            run_id, pending = note.get("run_id"), pending_run_of(note.get("pending_run"))
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(run_id, str) and run_id:
            return run_id
        if pending is not None:
            return pending
    return None


def record_run(folders: Sequence[str], run: str | PendingRun | None) -> None:
    """Keep ``run`` (its id, else its ``pending_run`` while MLflow has not created it) in each backup folder
    (created if need be), for a fit restored from it later (None: an earlier note is removed, so that a
    restore is not linked to a run this fit did not log into)."""
    for folder in folders:
        path = os.path.join(folder, RUN_FILE)
        try:
            if not run:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(path)
                continue
            os.makedirs(folder, exist_ok=True)
            written = f"{path}.{os.getpid()}.tmp"
            with open(written, "w", encoding="utf-8") as file:
                json.dump({"run_id": run} if isinstance(run, str) else {"pending_run": run}, file)
            os.replace(written, path)
        except OSError as exc:
            logger.warning("mlflow-green: could not note the run in the backup folder %s (%s): a fit restored "
                           "from it will not be tagged green.resumed_from", folder, exc)


def bind_resumable(session: Any) -> None:
    """Bind the fit's run (``session.bind_run``): a fit Keras restores from a ``BackupAndRestore`` backup resumes the
    run that wrote it (tagged ``green.resumed_from``), and the run is recorded in the backup folders for the next."""
    backups = backup_folders()
    session.bind_run(activate=False)  # active from the first epoch: callbacks starting a run of their own come first
    session.note_resumed_from(restored_run(backups))  # by its id, or the token of a run then not created
    record_run(backups, session.run_id or session.output.pending_creation())


__all__ = ["RUN_FILE", "PendingRun", "backup_folders", "bind_resumable", "record_run", "restored_run"]
