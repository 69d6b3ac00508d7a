"""SigtermWatch and sigterm_held with real signals sent to this process: the measurement ends first, then the
process does what it would have done."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from mlflow_green.training.termination import SigtermWatch, sigterm_held


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


def test_a_sigterm_inside_a_held_block_reaches_the_handler_it_had_when_the_block_ends(own_handler: list[str]) -> None:
    before = signal.getsignal(signal.SIGTERM)
    with sigterm_held():
        os.kill(os.getpid(), signal.SIGTERM)
        own_handler.append("report logged")  # the block's work is not cut short
    assert own_handler == ["report logged", "framework"]
    assert signal.getsignal(signal.SIGTERM) == before


def test_a_handler_that_raises_raises_after_the_held_block_not_inside_it() -> None:
    def broadcast_fails(signum: int, frame: object) -> None:
        raise RuntimeError("Connection closed by peer")

    previous = signal.signal(signal.SIGTERM, broadcast_fails)
    done: list[str] = []
    try:
        with pytest.raises(RuntimeError, match="Connection closed"), sigterm_held():
            os.kill(os.getpid(), signal.SIGTERM)
            done.append("totals")
            done.append("report")
        assert done == ["totals", "report"]
        assert signal.getsignal(signal.SIGTERM) is broadcast_fails
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_ctrl_c_inside_a_block_holding_sigint_is_raised_as_the_block_ends() -> None:
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    done: list[str] = []
    try:
        with pytest.raises(KeyboardInterrupt), sigterm_held(signum=signal.SIGINT):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # Python runs handlers between bytecodes: it would have been raised here
            done.append("figures logged")
        assert done == ["figures logged"]
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        assert signal.getsignal(signal.SIGTERM) is not None  # SIGTERM's handler untouched
    finally:
        signal.signal(signal.SIGINT, previous)


def test_a_sigterm_watch_given_back_inside_a_held_block_leaves_the_handler_it_had(own_handler: list[str]) -> None:
    """The same for SIGTERM: the handler it had is in force after the block (the watch's, put back over it, passed
    nothing on — a scheduler's SIGTERM then did not stop the process)."""
    before = signal.getsignal(signal.SIGTERM)
    watch = SigtermWatch(lambda: own_handler.append("ended"))
    watch.take()
    with sigterm_held():
        watch.restore()
    assert signal.getsignal(signal.SIGTERM) == before and not watch.watching
    os.kill(os.getpid(), signal.SIGTERM)
    assert own_handler == ["framework"]


def test_a_watch_given_back_under_a_users_handler_is_taken_again_by_its_next_call(own_handler: list[str]) -> None:
    """One watch for several calls (the Hugging Face callback's): given back while a handler of the user's was in force
    (disarmed, that handler kept), the next call's ``take()`` took nothing and a SIGTERM during it did not end its
    measurement."""
    watch = SigtermWatch(lambda: own_handler.append("ended KILLED"))
    watch.take()
    users = signal.signal(signal.SIGTERM, lambda signum, frame: own_handler.append("user"))
    watch.restore()
    assert signal.getsignal(signal.SIGTERM) is not users  # the user's, still in force
    watch.take()  # the next call
    assert watch.watching
    os.kill(os.getpid(), signal.SIGTERM)
    assert own_handler == ["ended KILLED", "user"]


def test_a_disarmed_watch_reached_through_a_handler_that_calls_it_passes_the_signal_on_and_keeps_that_handler(
        own_handler: list[str]) -> None:
    """A handler of the user's set over the watch that calls the one it replaced (as many libraries' do), in force after
    the call: each SIGTERM goes through it to the handler the watch had, and it stays the process's handler (the
    disarmed watch put its own previous handler back at the first SIGTERM: the user's was gone for every later one)."""
    watch = SigtermWatch(lambda: own_handler.append("ended KILLED"))
    watch.take()
    replaced = signal.getsignal(signal.SIGTERM)

    def users(signum: int, frame: object) -> None:
        own_handler.append("user")
        replaced(signum, frame)

    signal.signal(signal.SIGTERM, users)
    watch.restore()
    for _ in range(2):
        os.kill(os.getpid(), signal.SIGTERM)
    assert own_handler == ["user", "framework", "user", "framework"]
    assert signal.getsignal(signal.SIGTERM) is users


@pytest.mark.parametrize("first_ends", ["inside the later call's held block", "after the later call"])
def test_a_ctrl_c_watch_taken_over_another_still_taken_ends_its_measurement_then_the_others(first_ends: str) -> None:
    """A call measured while another call's watch still has SIGINT (a fit that failed in Keras's own code, not ended yet
    as the next call begins — it is ended inside that call's held block —, or a call inside another): its watch takes
    SIGINT over the other's (it left it alone, and its Ctrl-C was not its to end). A Ctrl-C ends both measurements, then
    raises; Python's handler is back."""
    from mlflow_green.training.interrupts import SigintWatch

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    ended: list[str] = []
    try:
        first, later = SigintWatch(lambda: ended.append("first")), SigintWatch(lambda: ended.append("later"))
        first.take()
        later.take()
        assert first.watching and later.watching
        if first_ends == "inside the later call's held block":
            with sigterm_held(signum=signal.SIGINT):
                first.restore()
            with pytest.raises(KeyboardInterrupt):
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.05)
            assert ended == ["later"]
        else:
            later.restore()  # the inner call ends: the outer's watch has SIGINT again
            assert first.watching
            later.take()
            with pytest.raises(KeyboardInterrupt):
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.05)
            assert ended == ["later", "first"]
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize("given_back_in", ["a held block", "a later watch's fit"])
def test_a_watch_given_back_while_another_handler_is_in_force_never_swallows_a_later_ctrl_c(given_back_in: str) -> None:
    """A fit that failed in Keras's own code is ended by the next call as it begins, inside a block holding signals (or
    a later watch has SIGINT): its watch gave SIGINT back while that block's handler was in force, the block put the
    watch's handler back as it ended — and every later Ctrl-C of the process went to a watch with nothing to hand it
    to: no ``KeyboardInterrupt``, and no later fit's watch took SIGINT (it saw a handler that was not Python's)."""
    from mlflow_green.training.interrupts import SigintWatch

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    ended: list[str] = []
    try:
        first = SigintWatch(lambda: ended.append("first"))
        first.take()
        if given_back_in == "a held block":
            with sigterm_held(signum=signal.SIGINT):
                first.restore()
        else:  # a handler set over the watch (a later watch, a framework's), which gives the watch's back as it ends
            over = signal.signal(signal.SIGINT, lambda signum, frame: None)
            first.restore()
            signal.signal(signal.SIGINT, over)
        later = SigintWatch(lambda: ended.append("later"))
        later.take()  # the next fit's watch takes SIGINT back
        assert later.watching
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
        assert ended == ["later"] and signal.getsignal(signal.SIGINT) is signal.default_int_handler
        # a Ctrl-C with no watch taking it in between: Python's own, once the given-back watch's handler is in force
        first = SigintWatch(lambda: ended.append("first again"))
        first.take()
        with sigterm_held(signum=signal.SIGINT):
            first.restore()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
        assert ended == ["later"] and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_second_signal_goes_through_nested_held_blocks_at_once(signum: int) -> None:
    """A fit's end holds the signal inside the callback's own hold (around the profile too): the second one went to
    the outer hold, which took it for its first — a third was needed to get through."""
    def interrupted(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signum, interrupted)
    done: list[str] = []
    try:
        with pytest.raises(KeyboardInterrupt), sigterm_held(signum=signum), sigterm_held(signum=signum):
            os.kill(os.getpid(), signum)
            time.sleep(0.05)
            done.append("held")
            os.kill(os.getpid(), signum)  # insisted: raised here
            time.sleep(0.05)
            done.append("went on")
        assert done == ["held"]
        assert signal.getsignal(signum) is interrupted
    finally:
        signal.signal(signum, previous)


def test_with_the_default_disposition_the_process_terminates_after_the_held_block() -> None:
    code = (
        "import os, signal, sys\n"
        "from mlflow_green.training.termination import sigterm_held\n"
        "with sigterm_held():\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    print('finished inside', flush=True)\n"
        "print('after the block', flush=True)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout == "finished inside\n" and done.returncode == -signal.SIGTERM


def test_a_held_block_off_the_main_thread_changes_nothing() -> None:
    before = signal.getsignal(signal.SIGTERM)
    seen: list[object] = []

    def elsewhere() -> None:
        with sigterm_held():
            seen.append(signal.getsignal(signal.SIGTERM))

    thread = threading.Thread(target=elsewhere)
    thread.start()
    thread.join()
    assert seen == [before]


def test_a_second_sigterm_inside_a_held_block_is_delivered_at_once(own_handler: list[str]) -> None:
    with sigterm_held():
        os.kill(os.getpid(), signal.SIGTERM)
        own_handler.append("held")
        os.kill(os.getpid(), signal.SIGTERM)  # whoever sends it insists
        own_handler.append("after the second")
    assert own_handler == ["held", "framework", "after the second"]


def test_a_disabled_hold_changes_nothing(own_handler: list[str]) -> None:
    with sigterm_held(enabled=False):  # around a collective a SIGTERM must still end the wait
        os.kill(os.getpid(), signal.SIGTERM)
        own_handler.append("after")
    assert own_handler == ["framework", "after"]


@pytest.mark.parametrize("parent", ["watching", "holding"])
def test_a_forked_child_terminates_by_sigterm_without_ending_the_parents_measurement(tmp_path, parent: str) -> None:  # type: ignore[no-untyped-def]
    """A data loader's worker process (forked: it inherits the handler) is stopped by its pool with SIGTERM.
    It has no measurement to end: it terminates as it would have without us (it ended the parent's run
    KILLED, or hung on the parent's locks, and the fit with it). Forked while the parent held SIGTERM (the
    end of its fit), it is not held either (a held one kept it alive, and a pool joining it waited forever)."""
    called = tmp_path / "on_term called"
    watch = SigtermWatch(lambda: called.write_text("in the child"))
    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    watch.take()
    try:
        with sigterm_held() if parent == "holding" else contextlib.nullcontext():
            pid = os.fork()
            if pid == 0:  # the worker: SIGTERM as before the watch (a Python handler can miss one before a blocking call)
                (tmp_path / "handler in the child").write_text(repr(signal.getsignal(signal.SIGTERM)))
                os.kill(os.getpid(), signal.SIGTERM)
                os._exit(0)  # not reached: SIGTERM terminates it
            _, status = os.waitpid(pid, 0)
    finally:
        watch.restore()
        signal.signal(signal.SIGTERM, previous)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM
    assert not called.exists()
    assert (tmp_path / "handler in the child").read_text() == repr(signal.SIG_DFL)


def test_a_forked_child_terminates_when_a_handler_installed_over_the_watch_calls_it(tmp_path) -> None:  # type: ignore[no-untyped-def]
    watch = SigtermWatch(lambda: None)
    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    watch.take()
    handler = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, lambda signum, frame: handler(signum, frame))  # a framework's, calling ours on
    try:
        pid = os.fork()
        if pid == 0:
            os.kill(os.getpid(), signal.SIGTERM)
            os._exit(0)  # not reached
        _, status = os.waitpid(pid, 0)
    finally:
        signal.signal(signal.SIGTERM, handler)
        watch.restore()
        signal.signal(signal.SIGTERM, previous)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM


_EARLY_SIGTERM_CHILD = """
import os, signal, sys
from pathlib import Path
# Registered before mlflow-green is imported, so it runs first in a forked child: a pool stopping a worker it has
# just forked (Keras's PyDataset with use_multiprocessing) sends SIGTERM while the child is still in the at-fork
# handlers registered before mlflow-green's (logging's).
os.register_at_fork(after_in_child=lambda: os.kill(os.getpid(), signal.SIGTERM))
import contextlib
from mlflow_green.training.termination import SigtermWatch, sigterm_held
called = Path(sys.argv[1])
watch = SigtermWatch(lambda: called.write_text(f"ended in process {os.getpid()}"))
watch.take()
with sigterm_held() if sys.argv[2] == "held" else contextlib.nullcontext():  # forked while the fit's end is measured
    pid = os.fork()
    if pid == 0:
        os._exit(0)  # not reached: SIGTERM terminates the child
    _, status = os.waitpid(pid, 0)
print("terminated by SIGTERM" if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM else f"status {status}")
watch.restore()
"""


@pytest.mark.parametrize("parent", ["watch", "held"])
def test_a_sigterm_that_reaches_a_forked_child_before_its_at_fork_handlers_ran_does_not_end_the_parents_measurement(
        tmp_path, parent: str) -> None:  # type: ignore[no-untyped-def]
    """Seen with a Keras PyDataset read by worker processes: the child, taking itself for the training, ended
    the parent's run KILLED and removed its spool file (the parent's later writes went to a new file); forked
    while the parent held SIGTERM (the end of a fit), the child held it too and lived on."""
    called = tmp_path / "on_term called"
    result = subprocess.run([sys.executable, "-c", _EARLY_SIGTERM_CHILD, str(called), parent], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "terminated by SIGTERM"
    assert not called.exists(), called.read_text()


_MASK_AROUND_FORK = """
import json, os, signal, sys, threading
def blocked():
    return signal.SIGTERM in signal.pthread_sigmask(signal.SIG_BLOCK, set())
seen = {}
os.register_at_fork(after_in_child=lambda: seen.update(child_at_fork=blocked()))  # runs before mlflow-green's
from mlflow_green.training.termination import SigtermWatch
watch = SigtermWatch(lambda: None)
if sys.argv[1] == "watch":
    watch.take()
read, write = os.pipe()
def fork():
    pid = os.fork()
    if pid == 0:
        os.write(write, json.dumps(dict(seen, child_after=blocked())).encode())
        os._exit(0)
    os.waitpid(pid, 0)
    seen["parent_after"] = blocked()
for where in ("main", "thread"):
    if where == "main":
        fork()
    else:
        thread = threading.Thread(target=fork)
        thread.start()
        thread.join()
    child = json.loads(os.read(read, 1000))
    print(json.dumps({"where": where, **child, "parent_after": seen.pop("parent_after")}))
watch.restore()
"""


@pytest.mark.parametrize("watch", ["watch", "none"])
def test_sigterm_is_blocked_in_a_forked_child_until_it_has_sigterm_back_and_nowhere_after(watch: str) -> None:
    """The child's earlier at-fork handlers run with SIGTERM blocked (a pool's SIGTERM waits, then terminates
    the worker as without us); after the fork neither process has it blocked; no watch, no change."""
    result = subprocess.run([sys.executable, "-c", _MASK_AROUND_FORK, watch], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    forks = [json.loads(line) for line in result.stdout.splitlines()]
    assert [fork["where"] for fork in forks] == ["main", "thread"]
    for fork in forks:
        assert fork == {"where": fork["where"], "child_at_fork": watch == "watch", "child_after": False, "parent_after": False}


def test_a_sigterm_inside_our_own_code_is_put_off_and_pending_until_it_comes_again(own_handler: list[str]) -> None:
    """A SIGTERM that arrives while mlflow-green's own code runs (here a meter's read, calling the power function
    given to it) is delivered again a moment later; meanwhile the watch says so (``pending``): a fit ending in between
    ends ``KILLED``, not ``FINISHED`` (the Keras callback's end reads it)."""
    from mlflow_green.testing import FakeMeter

    ended: list[bool] = []
    watch = SigtermWatch(lambda: ended.append(watch.pending))

    def power_w(elapsed_s: float) -> float:
        if not ended and not watch.pending:
            os.kill(os.getpid(), signal.SIGTERM)  # handled here, inside the meter's read: ours
        return 10.0

    meter = FakeMeter({"cpu:0": power_w})
    meter.open(0.0)
    watch.take()
    try:
        meter.read(0.001)
        assert watch.pending and not ended and own_handler == []
        deadline = time.monotonic() + 5
        while not ended and time.monotonic() < deadline:
            time.sleep(0.005)  # the signal comes again here, outside our code
        assert ended == [False] and own_handler == ["framework"] and not watch.pending
    finally:
        watch.restore()


def test_a_sigterm_held_at_once_goes_to_the_watch_as_the_block_ends_even_if_it_came_in_our_code(own_handler: list[str]) -> None:
    """``sigterm_held(at_once=True)`` (Lightning's ``on_fit_start``, while MLflow creates the run): a SIGTERM that came
    inside our code is handled by the watch as the block ends — not put off again, by when Lightning's handler had
    taken SIGTERM. A handler of the user's is handed the frame the signal came in."""
    from mlflow_green.testing import FakeMeter

    ended: list[str] = []
    watch = SigtermWatch(lambda: ended.append("KILLED"))
    sent: list[float] = []

    def power_w(elapsed_s: float) -> float:  # called many times a read
        if len(sent) < len(ended) + len(frames) + 1:
            sent.append(elapsed_s)
            os.kill(os.getpid(), signal.SIGTERM)  # inside the meter's read: ours
        return 10.0

    frames: list[object] = []
    meter = FakeMeter({"cpu:0": power_w})
    meter.open(0.0)
    watch.take()
    try:
        with sigterm_held(at_once=True):
            meter.read(0.001)
            assert ended == [] and own_handler == []  # held
        assert ended == ["KILLED"] and own_handler == ["framework"] and not watch.pending
    finally:
        watch.restore()
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: frames.append(frame))
    try:
        with sigterm_held(at_once=True):
            meter.read(0.002)
        assert len(frames) == 1 and frames[0] is not None
    finally:
        signal.signal(signal.SIGTERM, previous)
