"""Two fits at once in two threads of one process, for the thread tests of the Keras and Lightning callbacks."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


class PausesOnce:
    """Mixed into a framework's callback: ``pause()`` holds the call once, at its first pause point, until the
    other thread's call has run (``in_call`` set, ``go_on`` awaited)."""

    def __init__(self, in_call: threading.Event, go_on: threading.Event) -> None:
        super().__init__()
        self.in_call, self.go_on, self.paused = in_call, go_on, False

    def pause(self) -> None:
        if not self.paused:
            self.paused = True
            self.in_call.set()
            assert self.go_on.wait(120)


def fits_at_once(first: Callable[[threading.Event, threading.Event], None], second: Callable[[], None]) -> dict[str, str]:
    """Run ``first(in_fit, go_on)`` in a thread — it sets ``in_fit`` after its first epoch and waits for ``go_on`` —
    and ``second()`` in this thread meanwhile; returns how each ended ("returned" or the exception's repr)."""
    in_fit, go_on, ended = threading.Event(), threading.Event(), {}

    def run_first() -> None:
        try:
            first(in_fit, go_on)
            ended["first"] = "returned"
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            ended["first"] = repr(exc)

    thread = threading.Thread(target=run_first, name="first-fit")
    thread.start()
    try:
        assert in_fit.wait(120), "the first fit did not reach its first epoch's end"
        second()
        ended["second"] = "returned"
    finally:
        go_on.set()
        thread.join(120)
    return ended


def assert_the_first_measured_alone(cb: Any, experiment_id: str) -> None:
    """One run in the experiment: the first fit's (three epochs, once each), finished, and no run left active."""
    import mlflow
    from green_invariants import assert_green_invariants
    from mlflow import MlflowClient

    from mlflow_green.record import schema

    [run] = MlflowClient().search_runs([experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_id == cb.session.run_id
    assert [m.step for m in assert_green_invariants(run.info.run_id)[schema.ENERGY_KWH]] == [0, 1, 2]
    assert mlflow.active_run() is None


def assert_each_measured_its_own(first: Any, second: Any, messages: list[str]) -> None:
    """Two finished runs, the first fit's three epochs and the second's two, and the warning that they overlap."""
    from green_invariants import assert_green_invariants
    from mlflow import MlflowClient

    from mlflow_green.record import schema

    assert any("another training or evaluation is measured in another thread" in m for m in messages)
    assert first.session.run_id != second.session.run_id
    for cb, epochs in ((first, [0, 1, 2]), (second, [0, 1])):
        assert MlflowClient().get_run(cb.session.run_id).info.status == "FINISHED"
        assert [m.step for m in assert_green_invariants(cb.session.run_id)[schema.ENERGY_KWH]] == epochs


def warnings_while(caplog: Any, fits: Callable[[], dict[str, str]]) -> list[str]:
    """mlflow-green's warnings while ``fits`` ran — both fits having returned."""
    import logging

    with caplog.at_level(logging.WARNING, logger="mlflow_green"):
        assert fits() == {"first": "returned", "second": "returned"}
    return [record.getMessage() for record in caplog.records]
