"""The file operations under spool files: an exclusive ``flock``, whole writes, moving a bad file aside.

A live writer holds an exclusive lock on its spool file; a replay takes the same lock without
waiting, so a busy file raises :class:`~mlflow_green.errors.SpoolBusyError`. In a forked child (a
data-loader worker) every lock this process holds is dropped, so that a dead writer's lock is never
kept alive by its children.

Example:
    >>> import os, tempfile
    >>> from pathlib import Path
    >>> path = Path(tempfile.mkdtemp()) / "abc.1234.jsonl"
    >>> _ = path.write_text("not a spool")
    >>> fd = lock_file(path, block=False)
    >>> try:
    ...     lock_file(path, block=False)
    ... except SpoolBusyError as err:
    ...     print(err)
    abc.1234.jsonl is locked by a live writer or another sync
    >>> os.close(fd)
    >>> move_aside(path, "unreadable header").parent.name
    'malformed'
"""

from __future__ import annotations

import contextlib
import os
import secrets
import weakref
from pathlib import Path
from typing import Protocol

from mlflow_green.errors import SpoolBusyError
from mlflow_green.record.spool_format import MALFORMED_DIR

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Linux/macOS: no locking
    fcntl = None  # type: ignore[assignment]


class Lockholder(Protocol):
    """An object holding a spool lock (a :class:`~mlflow_green.record.spool.SpoolFile`)."""

    def release(self) -> None:
        """Close the lock's file descriptor (never raises)."""


_OPEN: weakref.WeakSet[Lockholder] = weakref.WeakSet()


def hold_until_fork(holder: Lockholder) -> None:
    """Release ``holder``'s lock in any child this process forks (its parent keeps it)."""
    _OPEN.add(holder)


def lock_file(path: Path, *, block: bool) -> int:
    """An fd of ``path`` holding its exclusive ``flock`` (unlocked where the file system has no locks).

    Raises:
        SpoolBusyError: Another process holds the lock and ``block`` is False.
    """
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    if fcntl is None:
        return fd
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if block else fcntl.LOCK_NB))
    except BlockingIOError:
        os.close(fd)
        raise SpoolBusyError(f"{path.name} is locked by a live writer or another sync") from None
    except OSError:
        pass  # a file system without locks: go on unlocked
    return fd


def write_all(fd: int, data: bytes) -> None:
    """Write every byte of ``data`` (``os.write`` may write less than asked)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def move_aside(path: Path, reason: str) -> Path:
    """Move a file (or anything) that is not a usable spool into ``malformed/``, with ``<name>.reason``."""
    folder = path.parent / MALFORMED_DIR
    folder.mkdir(exist_ok=True)
    target = folder / path.name
    while target.exists():
        target = folder / f"{path.name}.{secrets.token_hex(2)}"
    os.replace(path, target)
    with contextlib.suppress(OSError):  # a full disk: the move is what matters
        target.with_name(target.name + ".reason").write_text(reason + "\n")
    state = path.with_name(path.name[: -len(".jsonl")] + ".state") if path.name.endswith(".jsonl") else None
    if state is not None and state.is_file():
        os.replace(state, target.with_name(target.name + ".state"))
    return target


def _close_inherited_locks() -> None:
    """In a forked child, close the lock fds: a child (a data-loader worker) must not keep a dead writer's lock."""
    for holder in list(_OPEN):
        holder.release()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_inherited_locks)
