"""A callback's session carried back from the processes a pickled copy of it was spawned into.

With Lightning's ``ddp_spawn`` the training runs in spawned processes, each with a pickled copy of
the callback: what rank zero measured — the run it logged into, the run's totals, steps and
samples — stayed there, so ``cb.session.run_id`` was None after ``trainer.fit`` and a
``trainer.test`` after it (spawned again, from the launcher's copy) made a run of its own. Rank zero
now writes its session, at the end of each fit and evaluation, to a file that the launching
process's callback reads back (and removes) the next time its session is used. A copy made inside
one process (``copy.deepcopy(trainer)``) gets a channel of its own: what it measures never replaces
the original's session.

Example:
    >>> back = SpawnReturn()
    >>> back.spawned, back.receive() is None
    (False, True)
"""

from __future__ import annotations

import atexit
import logging
import os
import pickle
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlflow_green.cache_dir import cache_dir

if TYPE_CHECKING:
    from mlflow_green.training.session import TrainingSession

logger = logging.getLogger(__name__)


class SpawnReturn:
    """The channel from a spawned copy of a callback back to the process that pickled it.

    Attributes:
        owner_pid: The process whose callback this channel returns to.
        identity: Unique per callback (a copy in the same process gets a new one).
        sent: The owner pickled the callback (a spawned copy may write back): its session is
            looked for at the next use, until one is received or the owner runs a hook itself.
    """

    def __init__(self) -> None:
        self.owner_pid = os.getpid()
        self.identity = uuid.uuid4().hex
        self.sent = False

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if self.owner_pid == os.getpid():  # a copy inside the owner's process: a channel of its own
            self.identity, self.sent = uuid.uuid4().hex, False
            self._cleanup_registered = False

    @property
    def spawned(self) -> bool:
        """True in a process spawned with a pickled copy (it writes back; it never reads)."""
        return self.owner_pid != os.getpid()

    def path(self) -> Path:
        """The file a spawned copy writes and the owner reads (under ``cache_dir()/spawned``)."""
        return cache_dir() / "spawned" / f"{self.owner_pid}-{self.identity}.pkl"

    def pickled_by_owner(self) -> None:
        """The owner pickles the callback (for a spawn, or a copy): look for a session coming back (a file
        handed back and never read is removed when the owner exits)."""
        if not self.spawned:
            if not self.__dict__.get("_cleanup_registered"):
                atexit.register(_remove, self.path())
                self._cleanup_registered = True
            self.sent = True

    def send(self, session: TrainingSession) -> None:
        """In a spawned process: write ``session`` for the owner (replacing an earlier one). Never raises."""
        if not self.spawned:
            return
        path = self.path()
        try:
            data = pickle.dumps(session)
            path.parent.mkdir(parents=True, exist_ok=True)
            written = path.with_name(f"{path.name}.{os.getpid()}.tmp")
            written.write_bytes(data)
            os.replace(written, path)
        except Exception as exc:  # measurement never breaks training
            logger.warning("mlflow-green: could not hand the measured session back to the launching process (%s): "
                           "there, the callback does not know the run this training logged into", exc)

    def receive(self) -> TrainingSession | None:
        """In the owner: the session a spawned copy wrote back (the file removed), or None. Never raises."""
        if not self.sent or self.spawned:
            return None
        path = self.path()
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            logger.warning("mlflow-green: could not read the session handed back by a spawned process: %s", exc)
            self.sent = False
            return None
        self.sent = False
        try:
            path.unlink()
        except OSError:
            pass
        try:
            return pickle.loads(data)  # noqa: S301 - written by our own spawned copy, in our cache folder
        except Exception as exc:
            logger.warning("mlflow-green: the session handed back by a spawned process is unreadable: %s", exc)
            return None

    def owner_works(self) -> None:
        """The owner runs a hook itself: no spawned copy is writing back now."""
        if not self.spawned:
            self.sent = False


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


class CarriesSession:
    """Mixin for a callback whose :attr:`session` comes back from spawned copies (see the module's docstring)."""

    _session: TrainingSession
    _spawn_return: SpawnReturn

    @property
    def session(self) -> TrainingSession:
        """The callback's training session (in a launcher, the one its spawned rank zero handed back)."""
        back = self._spawn_return
        if back.sent:
            received = back.receive()
            if received is not None:
                self._session = received
        return self._session

    @session.setter
    def session(self, value: TrainingSession) -> None:
        if "_spawn_return" not in self.__dict__:
            self._spawn_return = SpawnReturn()
        self._session = value

    def _hand_session_back(self) -> None:
        """In a spawned rank zero: hand the session back to the launching process (no-op elsewhere)."""
        self._spawn_return.send(self._session)


__all__ = ["CarriesSession", "SpawnReturn"]
