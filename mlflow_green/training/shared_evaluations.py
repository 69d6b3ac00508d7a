"""Evaluations that several callbacks of this process log into one run, each going on from the run's latest total.

Two callbacks (two models' fits and evaluations in a run of the user's, a GAN's two halves) each keep the run's
running totals as they were when they bound it. An evaluation's ``green/energy_{kind}_kwh`` is a running total of
the run: logged by one callback after another's evaluation, from its own figures alone, it went back (52.7 J,
then 29.0 J), and the report it wrote counted only its own samples. Each evaluation logged outside a fit is noted
here, per run and kind; the next one — whichever callback logs it — goes on from the latest. (Runs shared with
another process are continued from the run's figures in MLflow when bound, as before.)

Example:
    >>> from mlflow_green.measure.readings import Measurement
    >>> first, second = new_writer(), new_writer()
    >>> note("run-1", "test", LoggedEvaluation(Measurement(duration_s=1.0), samples=100, step=0, writer=first))
    >>> sorted(logged_by_others("run-1", second)), logged_by_others("run-1", first)
    (['test'], {})
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass

from mlflow_green.measure.readings import Measurement


@dataclass(frozen=True)
class LoggedEvaluation:
    """The run's running total of one kind of evaluation as last logged, its samples, the step of its point, and
    which session logged it (:func:`new_writer`)."""

    total: Measurement
    samples: int
    step: int
    writer: int


_LOCK = threading.Lock()
_LATEST: dict[str, dict[str, LoggedEvaluation]] = {}
_REPORTED: dict[str, int] = {}  # run id -> the session (writer) that last wrote its report
_WRITERS = itertools.count(1)


def new_writer() -> int:
    """A number of this process that tells one session's notes from another's."""
    return next(_WRITERS)


def note(run_id: str, kind: str, logged: LoggedEvaluation) -> None:
    """``logged`` is now ``run_id``'s latest ``kind`` evaluation total."""
    with _LOCK:
        _LATEST.setdefault(run_id, {})[kind] = logged


def note_report(run_id: str | None, writer: int) -> None:
    """The session ``writer`` wrote ``run_id``'s ``green/report.json`` (a fit's end, an evaluation's, a profile's)."""
    if run_id:
        with _LOCK:
            _REPORTED[run_id] = writer


def reported_by_other(run_id: str | None, writer: int) -> bool:
    """True when another session of this process wrote ``run_id``'s report last (two models trained in turn)."""
    with _LOCK:
        return bool(run_id) and _REPORTED.get(run_id, writer) != writer  # type: ignore[arg-type]


def logged_by_others(run_id: str, writer: int) -> dict[str, LoggedEvaluation]:
    """The kinds whose latest total in ``run_id`` another session than ``writer`` logged, and those totals."""
    with _LOCK:
        return {kind: logged for kind, logged in _LATEST.get(run_id, {}).items() if logged.writer != writer}


__all__ = ["LoggedEvaluation", "logged_by_others", "new_writer", "note", "note_report", "reported_by_other"]
