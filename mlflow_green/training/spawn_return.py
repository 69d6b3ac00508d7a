"""A callback's session carried back from the processes a pickled copy of it was spawned into.

With Lightning's ``ddp_spawn`` the training runs in spawned processes, each with a pickled copy of
the callback: what rank zero measured — the run it logged into, the run's totals, steps and
samples — stayed there, so ``cb.session.run_id`` was None after ``trainer.fit`` and a
``trainer.test`` after it (spawned again, from the launcher's copy) made a run of its own. Rank zero
now writes its session's run state, at the end of each fit and evaluation, to a file that the
launching process's callback reads back (and removes) the next time its session is used; the
launcher keeps its own meters' setup (its process tree, its devices, its MLflow context).

The channel is armed by pickling only: a copy that arrives in another process by ``pickle``
writes back to the process that pickled it; a forked copy (``ddp_fork``) or a copy inside one
process (``copy.deepcopy``) never does. The file lives in ``cache_dir()/spawned``, read only from a
folder owned by this user and not writable by others; one never read is removed when the
launching process exits.

Example:
    >>> back = SpawnReturn()
    >>> back.armed, back.receive() is None
    (False, True)
"""

from __future__ import annotations

import atexit
import logging
import os
import pickle
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlflow_green.cache_dir import cache_dir, write_atomically

if TYPE_CHECKING:
    from mlflow_green.training.session import TrainingSession

logger = logging.getLogger(__name__)

LOOK_INTERVAL_S = 0.5
"""How often, at most, the owner looks for a session handed back (a session read in between costs an
attribute check)."""


class SpawnReturn:
    """The channel from a pickled copy of a callback, in another process, back to the process that pickled it.

    Attributes:
        owner_pid: The process the session goes back to (the one that pickled the callback).
        identity: Unique per callback (a copy made inside one process gets a new one).
        armed: True in a copy unpickled in another process: it hands its session back.
        sent: In the owner: the callback was pickled, so a copy may hand a session back; it is looked
            for until one is received or the owner runs a fit or evaluation itself.
    """

    def __init__(self) -> None:
        self.owner_pid = os.getpid()
        self.identity = uuid.uuid4().hex
        self.armed = False
        self.sent = False
        self._looked_s = -LOOK_INTERVAL_S

    def __getstate__(self) -> dict[str, Any]:
        if self.owner_pid != os.getpid():  # a copy of a copy (pickled where it was spawned): it hands nothing back
            return {"owner_pid": os.getpid(), "identity": uuid.uuid4().hex, "armed": False, "sent": False,
                    "_looked_s": -LOOK_INTERVAL_S}
        path = self.path()
        if path not in _REMOVE_AT_EXIT:  # one handed back and never read
            _REMOVE_AT_EXIT.add(path)
            atexit.register(_remove, path)
        self.sent = True
        return {"owner_pid": self.owner_pid, "identity": self.identity, "armed": True, "sent": False,
                "_looked_s": -LOOK_INTERVAL_S}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if self.owner_pid == os.getpid():  # a copy inside the owner's process: a channel of its own, never armed
            self.identity, self.armed = uuid.uuid4().hex, False

    def path(self) -> Path:
        """The file a copy writes and the owner reads."""
        return cache_dir() / "spawned" / f"{self.owner_pid}-{self.identity}.pkl"

    def send(self, session: TrainingSession) -> None:
        """In an armed copy: write ``session`` for the owner (replacing an earlier one). Never raises."""
        if not self.armed or self.owner_pid == os.getpid():
            return
        try:
            path = self.path()
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if path.parent.stat().st_uid == os.getuid():  # made before with the umask's mode (0775 under umask 002)
                path.parent.chmod(0o700)
            write_atomically(path, pickle.dumps(session))
        except Exception as exc:  # measurement never breaks training
            logger.warning("mlflow-green: could not hand the measured session back to the launching process (%s): "
                           "there, the callback does not know the run this training logged into", exc)

    def receive(self, *, now: bool = False) -> TrainingSession | None:
        """In the owner: the session a copy handed back (the file removed), or None. Looks at most every
        :data:`LOOK_INTERVAL_S` unless ``now``. Never raises."""
        if not self.sent or self.owner_pid != os.getpid():
            return None
        now_s = time.monotonic()
        if not now and now_s - self._looked_s < LOOK_INTERVAL_S:
            return None
        self._looked_s = now_s
        path = self.path()
        try:
            if not _private(path.parent):
                return None
            data = path.read_bytes()
        except OSError:  # none handed back (yet)
            return None
        self.sent = False
        _remove(path)
        try:
            return pickle.loads(data)  # noqa: S301 - written by our own copy, in a folder only this user writes
        except Exception as exc:
            logger.warning("mlflow-green: the session handed back by a spawned process is unreadable: %s", exc)
            return None

    def owner_works(self) -> None:
        """The owner runs a fit or an evaluation itself: no copy is handing a session back now."""
        self.sent = False


_REMOVE_AT_EXIT: set[Path] = set()


def _private(folder: Path) -> bool:
    """True if ``folder`` belongs to this user and no one else can write in it (its files are unpickled)."""
    info = folder.stat()
    return info.st_uid == os.getuid() and not info.st_mode & 0o022


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


class CarriesSession:
    """Mixin for a callback whose :attr:`session` comes back from copies spawned into other processes."""

    _session: TrainingSession
    _spawn_return: SpawnReturn

    @property
    def session(self) -> TrainingSession:
        """The callback's training session (in a launcher, with the run state its spawned rank zero handed back)."""
        if self._spawn_return.sent:
            self._take_back(self._spawn_return.receive())
        return self._session

    @session.setter
    def session(self, value: TrainingSession) -> None:
        if "_spawn_return" not in self.__dict__:
            self._spawn_return = SpawnReturn()
        self._session = value

    def _hand_session_back(self) -> None:
        """In a copy spawned into another process: hand the session back (a no-op elsewhere)."""
        self._spawn_return.send(self._session)

    def _session_for_work(self) -> TrainingSession:
        """Before a fit or an evaluation in this process: a session handed back first, then no more looking."""
        back = self._spawn_return
        if back.sent:
            self._take_back(back.receive(now=True))
        back.owner_works()
        return self._session

    def _take_back(self, received: TrainingSession | None) -> None:
        """The run state of ``received``; this process's own meters' setup, distributed context and MLflow
        context (rank zero's process tree and devices are not this process's)."""
        if received is None:
            return
        own = self._session
        received.template, received.dist = own.template, own.dist
        received.output.context = own.output.context
        self._session = received


__all__ = ["LOOK_INTERVAL_S", "CarriesSession", "SpawnReturn"]
