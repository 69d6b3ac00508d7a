"""signals_held with real signals sent to this process: a SIGTERM and a Ctrl-C inside the block are both held
to its end, then delivered as they would have been."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

from mlflow_green.training.signal_holds import signals_held


@pytest.fixture()
def framework_handlers() -> Iterator[list[str]]:
    """A SIGTERM handler of the process's own (a framework's) and Python's Ctrl-C handler, restored after."""
    calls: list[str] = []
    previous_term = signal.signal(signal.SIGTERM, lambda signum, frame: calls.append("SIGTERM handled"))
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield calls
    signal.signal(signal.SIGTERM, previous_term)
    signal.signal(signal.SIGINT, previous_int)


def test_a_sigterm_and_a_ctrl_c_inside_the_block_are_delivered_as_it_ends(framework_handlers: list[str]) -> None:
    with pytest.raises(KeyboardInterrupt):
        with signals_held():
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGINT)
            framework_handlers.append("the block ran to its end")
    assert framework_handlers == ["the block ran to its end", "SIGTERM handled"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # both handlers given back


def test_disabled_it_holds_neither(framework_handlers: list[str]) -> None:
    with pytest.raises(KeyboardInterrupt):
        with signals_held(enabled=False):
            os.kill(os.getpid(), signal.SIGTERM)
            framework_handlers.append("after SIGTERM")
            os.kill(os.getpid(), signal.SIGINT)
            framework_handlers.append("not reached")
    assert framework_handlers == ["SIGTERM handled", "after SIGTERM"]


def test_a_process_forked_inside_the_block_gets_sigterm_as_it_was(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Imported alone (a session ends its fit through it), the holds had no at-fork handlers: a data loader's worker
    forked at a fit's end kept the parent's hold, and a pool stopping it with SIGTERM waited for ever."""
    import subprocess
    import sys

    script = (
        "import os, signal, sys\n"
        "from mlflow_green.training.signal_holds import signals_held\n"
        "with signals_held():\n"
        "    pid = os.fork()\n"
        "    if pid == 0:\n"
        f"        open({str(tmp_path / 'child')!r}, 'w').write(repr(signal.getsignal(signal.SIGTERM)))\n"
        "        os._exit(0)\n"
        "    os.waitpid(pid, 0)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "child").read_text() == repr(signal.SIG_DFL)
