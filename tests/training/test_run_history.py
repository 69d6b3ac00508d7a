"""Reading a run's earlier fits never holds the training longer than the start timeout."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from mlflow_green.record.bounded_read import read_within
from mlflow_green.training.run_history import EarlierFits


def test_a_read_that_is_late_is_given_up_at_the_timeout_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    release = threading.Event()

    def slow_server() -> EarlierFits:
        release.wait(30)  # a tracking server that does not answer
        return EarlierFits(None, 3)

    started_s = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="mlflow_green"):
        assert read_within(slow_server, 0.2) is None
    assert time.monotonic() - started_s < 2.0
    assert "could not be read within 0.2 s" in caplog.text
    release.set()


def test_a_read_that_raises_is_taken_as_nothing_and_one_in_time_is_returned() -> None:
    def broken() -> EarlierFits:
        raise ConnectionError("refused")

    assert read_within(broken, 1.0) is None
    assert read_within(lambda: EarlierFits(None, 4), 1.0) == EarlierFits(None, 4)
