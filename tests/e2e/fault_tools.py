"""Tools of the fault suite: a training child process to pause and kill, a read-only folder, a full disk.

The folder faults are real: a read-only bind mount and a full tmpfs when this machine lets us
mount (we run as root in CI); otherwise the folder is made read-only by its permissions and the
training runs without the capability that lets root ignore them (``CAP_DAC_OVERRIDE``, dropped
from its bounding set), and a full disk is the kernel's file-size limit (``RLIMIT_FSIZE``): the
same errors reach the same code (``EROFS``/``EACCES``, ``ENOSPC``/``EFBIG``).
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).with_name("fault_training.py")
_PR_CAPBSET_DROP = 24
_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH = 1, 2


def _drop_dac_override() -> None:
    """In the child, before exec: root no longer bypasses file permissions."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH):
        if libc.prctl(_PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def _can_mount(scratch: Path) -> bool:
    if os.environ.get("GREEN_FAULTS_NO_MOUNT"):  # to run the fallbacks where mounting works
        return False
    probe = scratch / "mount-probe"
    probe.mkdir(parents=True, exist_ok=True)
    ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe)], capture_output=True).returncode == 0
    if ok:
        subprocess.run(["umount", str(probe)], capture_output=True)
    return ok


class Child:
    """A training process (see fault_training.py): read its events, release its pauses, kill it."""

    def __init__(self, config: dict[str, Any], env: dict[str, str], *, demote: bool = False,
                 preexec: Callable[[], None] | None = None) -> None:
        def setup() -> None:
            if preexec is not None:
                preexec()
            if demote:
                _drop_dac_override()

        self.process = subprocess.Popen(
            [sys.executable, str(SCRIPT), json.dumps(config)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, env={**os.environ, **env}, preexec_fn=setup,
        )
        self.stderr = ""

    def next_event(self) -> dict[str, Any]:
        for line in self.process.stdout:  # type: ignore[union-attr]
            if line.startswith("{"):
                return json.loads(line)
        self.finish()
        raise AssertionError(f"the training ended early ({self.process.returncode}):\n{self.stderr[-6000:]}")

    def wait_paused(self, epoch: int) -> dict[str, Any]:
        event = self.next_event()
        assert (event["event"], event["epoch"]) == ("paused", epoch), event
        return event

    def release(self) -> None:
        self.process.stdin.write("go\n")  # type: ignore[union-attr]
        self.process.stdin.flush()  # type: ignore[union-attr]

    def result(self, timeout_s: float = 240) -> dict[str, Any]:
        event = self.next_event()
        assert event["event"] == "result", event
        self.finish(timeout_s)
        assert self.process.returncode == 0, self.stderr[-6000:]
        return event

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.finish()

    def finish(self, timeout_s: float = 240) -> None:
        try:
            _, self.stderr = self.process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, self.stderr = self.process.communicate()

    def warnings(self, containing: str) -> list[str]:
        return [line for line in self.stderr.splitlines() if "mlflow-green:" in line and containing in line]


class FolderFaults:
    """Makes folders read-only or full, by mounts where allowed (see the module docstring)."""

    def __init__(self, scratch: Path) -> None:
        self.scratch = scratch
        self.mounts = _can_mount(scratch)
        self._mounted: list[Path] = []

    @property
    def demote(self) -> bool:
        """True when a read-only folder needs the training to run without root's permission override."""
        return not self.mounts and os.geteuid() == 0

    def writable_by_child(self, *folders: Path) -> None:
        for folder in folders:
            folder.mkdir(parents=True, exist_ok=True)

    def make_read_only(self, folder: Path) -> None:
        if self.mounts:
            _run(["mount", "--bind", str(folder), str(folder)])
            self._mounted.append(folder)
            _run(["mount", "-o", "remount,bind,ro", str(folder)])
        else:  # chmod -R a-w
            for path in folder.rglob("*"):
                path.chmod(0o555 if path.is_dir() else 0o444)
            folder.chmod(0o555)

    @contextlib.contextmanager
    def full(self, folder: Path, *, keep: Callable[[Path], None] | None = None) -> Iterator[Callable[[], None] | None]:
        """``folder`` full: yields a ``preexec`` for processes (the file-size limit) when it cannot be mounted.

        ``keep(folder)`` runs before it fills up (to leave files there).
        """
        folder.mkdir(parents=True, exist_ok=True)
        if not self.mounts:
            if keep is not None:
                keep(folder)
            yield lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (1, 1))
            return
        _run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(folder)])
        self._mounted.append(folder)
        if keep is not None:
            keep(folder)
        with contextlib.suppress(OSError), (folder / "filler").open("wb") as f:
            while True:
                f.write(b"\0" * 4096)
                f.flush()
        yield None

    def undo(self) -> None:
        for folder in reversed(self._mounted):
            subprocess.run(["umount", "-l", str(folder)], capture_output=True)
        self._mounted.clear()


def _run(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(command)}: {result.stderr}")


def spool_entries(folder: Path) -> tuple[Path, list[dict[str, Any]], int]:
    """The one spool file in ``folder``: (path, its entries, the seq of the last one sent)."""
    [path] = [p for p in folder.glob("*.jsonl")]
    lines = path.read_text().splitlines()[1:]
    entries = [json.loads(line) for line in lines if line.strip()]
    state = path.with_name(path.name[: -len(".jsonl")] + ".state")
    done = json.loads(state.read_text())["done_seq"] if state.exists() else 0
    return path, entries, done
