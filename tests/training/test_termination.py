"""SigtermWatch with real signals sent to this process: ends first, then does what the process would have done."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator

import pytest

from mlflow_green.training.termination import SigtermWatch


@pytest.fixture()
def own_handler() -> Iterator[list[str]]:
    """A Python SIGTERM handler of the process's own (a framework's), restored after the test."""
    calls: list[str] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: calls.append("framework"))
    yield calls
    signal.signal(signal.SIGTERM, previous)


def test_sigterm_ends_the_measurement_then_calls_the_handler_it_had_and_gives_it_back(own_handler: list[str]) -> None:
    before = signal.getsignal(signal.SIGTERM)
    watch = SigtermWatch(lambda: own_handler.append("ended KILLED"))
    watch.take()
    assert watch.watching and signal.getsignal(signal.SIGTERM) != before
    os.kill(os.getpid(), signal.SIGTERM)
    assert own_handler == ["ended KILLED", "framework"]
    assert signal.getsignal(signal.SIGTERM) == before and not watch.watching


def test_a_failing_end_is_logged_and_the_handler_it_had_still_runs(own_handler: list[str], caplog: pytest.LogCaptureFixture) -> None:
    def broken() -> None:
        raise RuntimeError("tracking server gone")

    watch = SigtermWatch(broken)
    watch.take()
    os.kill(os.getpid(), signal.SIGTERM)
    assert own_handler == ["framework"] and "tracking server gone" in caplog.text


def test_restore_after_a_normal_end_gives_the_handler_back_untouched(own_handler: list[str]) -> None:
    before = signal.getsignal(signal.SIGTERM)
    watch = SigtermWatch(lambda: own_handler.append("ended"))
    watch.take()
    watch.restore()
    assert signal.getsignal(signal.SIGTERM) == before
    os.kill(os.getpid(), signal.SIGTERM)
    assert own_handler == ["framework"]


def test_an_ignored_sigterm_stays_ignored_and_other_threads_cannot_take_it() -> None:
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        watch = SigtermWatch(lambda: None)
        watch.take()
        assert not watch.watching and signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGTERM, previous)
    elsewhere = SigtermWatch(lambda: None)
    thread = threading.Thread(target=elsewhere.take)
    thread.start()
    thread.join()
    assert not elsewhere.watching and signal.getsignal(signal.SIGTERM) == previous
