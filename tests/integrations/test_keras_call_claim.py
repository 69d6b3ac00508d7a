"""Which thread's call one Keras GreenCallback measures (``CallClaim``): claimed at the call's start hook."""

from __future__ import annotations

import threading
import time

from mlflow_green.integrations._keras_frames import CallClaim


def _in_thread(fn, *, keep_alive: threading.Event | None = None) -> list:  # noqa: ANN001 - a test helper
    out: list = []

    def run() -> None:
        out.append(fn())
        if keep_alive is not None:
            keep_alive.wait(30)

    thread = threading.Thread(target=run)
    thread.start()
    if keep_alive is None:
        thread.join(30)
    else:
        while not out:
            time.sleep(0.01)
    return out


def test_a_call_being_set_up_or_running_in_another_thread_holds_it() -> None:
    claim, alive = CallClaim(), threading.Event()
    try:
        assert _in_thread(lambda: claim.take(busy=lambda: False), keep_alive=alive) == [True]
        assert claim.take(busy=lambda: False) is False  # being set up there
        claim.settle()
        assert claim.take(busy=lambda: True) is False  # its watch says it runs
        assert claim.take(busy=lambda: False) is True  # it ended unseen: this thread's now
        assert claim.take(busy=lambda: True) is None  # a call inside this thread's own
    finally:
        alive.set()


def test_a_claim_whose_thread_is_gone_or_whose_set_up_failed_is_stale() -> None:
    claim = CallClaim()
    assert _in_thread(lambda: claim.take(busy=lambda: True)) == [True]  # the thread ended, claim never released
    assert claim.take(busy=lambda: True) is True
    claim.release()
    alive = threading.Event()
    try:
        stale = CallClaim()
        stale.SETUP_S = 0.05
        assert _in_thread(lambda: stale.take(busy=lambda: True), keep_alive=alive) == [True]  # never settled
        assert stale.take(busy=lambda: True) is False
        time.sleep(0.1)
        assert stale.take(busy=lambda: True) is True  # its set-up failed: not held for good
    finally:
        alive.set()


def test_release_is_the_claiming_threads_and_a_copy_claims_nothing() -> None:
    import copy

    claim = CallClaim()
    assert claim.take(busy=lambda: False) is True
    _in_thread(claim.release)  # another thread (a watch ending the call): not its claim to give back
    assert claim.take(busy=lambda: False) is None
    assert copy.deepcopy(claim).take(busy=lambda: True) is True
    claim.release()
    assert _in_thread(lambda: claim.take(busy=lambda: True)) == [True]
