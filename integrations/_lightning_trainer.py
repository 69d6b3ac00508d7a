"""What the Lightning callback reads from, or shows in, a ``Trainer`` (small, framework-tolerant helpers)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

from mlflow_green.formatting import readable_figures
from mlflow_green.record.runs import RunHandle

logger = logging.getLogger(__name__)


def show_in_progress_bar(trainer: Any, live: Mapping[str, float]) -> None:
    """Add the figures to those the progress bar shows (written as the CLI writes them)."""
    try:
        figures = trainer.progress_bar_metrics  # the dict the progress bar reads at each refresh
        figures.update({key: format(value, "") for key, value in readable_figures(live).items()})
    except Exception as exc:  # display only: never break training
        logger.debug("mlflow-green: progress bar figures not shown (%s)", exc)


class RootDevice:
    """The device a trainer's strategy trains on, asked when needed."""

    def __init__(self, trainer: Any) -> None:
        self.trainer = trainer

    def __call__(self) -> Any:
        return self.trainer.strategy.root_device


def sanity_checking(trainer: Any) -> bool:
    """``trainer.sanity_checking``, asked as one identity test: the trainer's stage is Lightning's
    ``RunningStage.SANITY_CHECKING`` member itself (the property compares string enums: eight Python calls, at each
    validation's start and end). A trainer without a Lightning stage is asked its property.

    Example:
        >>> import enum
        >>> class RunningStage(str, enum.Enum):
        ...     TRAINING = "train"
        ...     SANITY_CHECKING = "sanity_check"
        >>> trainer = type("Trainer", (), {})()
        >>> trainer.state = type("State", (), {"stage": RunningStage.SANITY_CHECKING})()
        >>> sanity_checking(trainer)
        True
        >>> trainer.state.stage = RunningStage.TRAINING
        >>> sanity_checking(trainer)
        False
    """
    stage = getattr(getattr(trainer, "state", None), "stage", None)
    sanity = getattr(type(stage), "SANITY_CHECKING", None)
    if sanity is None:  # no stage set, or not Lightning's: the trainer's own answer
        return bool(getattr(trainer, "sanity_checking", False))
    return stage is sanity


def ends_the_epoch(trainer: Any) -> bool:
    """True when this validation ran after the epoch's last batch (no training follows it before
    ``on_train_epoch_end``); False mid-epoch or if unknown."""
    try:
        return bool(trainer.fit_loop.epoch_loop.batch_progress.is_last_batch)
    except AttributeError:
        return False


def bind_trainer_run(session: Any, trainer: Any, *, keep: bool = False) -> None:
    """Bind ``session`` to Lightning's MLFlowLogger's run, else the active run, else a new one (rank zero only).
    ``keep``: an evaluation keeps the run already bound (the last fit's), unless its Trainer's MLFlowLogger logs into
    another (one callback given to two Trainers in turn: Trainer A's ``test`` after B's fit goes into A's logger's run,
    beside Lightning's ``test_*`` metrics, not into B's)."""
    if not trainer.is_global_zero:
        return
    mlflow_loggers = [candidate for candidate in getattr(trainer, "loggers", None) or []
                      if type(candidate).__name__ == "MLFlowLogger"]
    if keep and session.output.bound and not _logs_elsewhere(mlflow_loggers, session):
        return  # the fit's run, created or still waiting for its server (spooled)
    if mlflow_loggers:
        if len(mlflow_loggers) > 1 and not getattr(trainer, "_green_loggers_warned", False):
            trainer._green_loggers_warned = True  # once per Trainer
            logger.warning("mlflow-green: the Trainer has %d MLFlowLoggers; the callback logs into the first's run only",
                           len(mlflow_loggers))
        try:
            run = RunHandle(mlflow_loggers[0].experiment, mlflow_loggers[0].run_id)
        except Exception as exc:
            logger.warning("mlflow-green: MLFlowLogger has no usable run (%s)", exc)
        else:
            session.bind_run(run)
            return
    session.bind_run(activate=keep)  # a fit's run active from its first epoch: callbacks starting their own come first


def _logs_elsewhere(mlflow_loggers: list[Any], session: Any) -> bool:
    """True when the Trainer's (first) MLFlowLogger has a run other than the one ``session`` is bound to (or than the
    run whose child it is: the logger's run held a ``track()`` block's figures, and its fit logged into a child)."""
    if not mlflow_loggers:
        return False
    try:
        run_id = mlflow_loggers[0].run_id
    except Exception:  # its server unreachable: the bound run stays
        return False
    return run_id is not None and run_id not in (session.output.run_id, getattr(session, "child_of", None))


def started_tracker(template: Any) -> Any:
    """A fresh tracker of ``template``, started now (None if it cannot start: the fit then starts measuring later)."""
    try:
        tracker = template.fresh()
        tracker.start()
    except Exception as exc:  # measurement never crashes training
        logger.debug("mlflow-green: could not start measuring at setup: %s", exc)
        return None
    return tracker


def busy_in_another_thread(callback: Any, trainer: Any) -> bool:
    """True when ``callback`` measures a call (a fit from its ``setup`` on, an evaluation) running in another thread
    — one instance cannot measure two at once (two Trainers in two threads given one callback): for this call of
    ``trainer`` it is then swapped out of its callbacks, with a warning, and put back at the call's ``teardown``
    (Lightning's, which runs when the call raises too): this call goes unmeasured, the Trainer's later ones not."""
    if callback._thread in (0, threading.get_ident()):
        return False
    if callback._watch is not None:  # that call may have left without a hook (_lightning_call_watch): ended now if so
        callback._watch.settle()
    if callback._early is None and not callback._fitting and not callback.session.eval_in_progress:
        return False
    base = next(c for c in type(callback).__mro__[1:] if c.__name__ == "Callback")

    class StandIn(base):  # type: ignore[misc, valid-type]
        def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
            trainer.callbacks = [callback if c is self else c for c in trainer.callbacks]

    trainer.callbacks = [StandIn() if c is callback else c for c in trainer.callbacks]
    logger.warning("mlflow-green: this GreenCallback is measuring a Trainer in another thread; this Trainer's call "
                   "(thread %s) goes unmeasured. Give each Trainer its own GreenCallback().", threading.current_thread().name)
    return True


def stop_unused(tracker: Any, *, unlogged: bool = False) -> None:
    """Stop a tracker :func:`started_tracker` started that no fit took (the setup after it failed); returns None.

    ``unlogged``: the call ended without an error before its fit began — Lightning's ``Tuner`` (``lr_find``,
    ``scale_batch_size``) runs its trials in such a call and ends it before the fit's start hooks: a warning
    says what was measured and is not logged, and how to have it billed."""
    if tracker is not None and tracker.running:
        measured = tracker.stop()
        if unlogged and _inside_a_block():
            logger.warning("mlflow-green: a Trainer.fit ended before it began training (Lightning's Tuner: lr_find or "
                           "scale_batch_size): its %.1f J are in the enclosing mlflow_green.track() block's total, in no "
                           "fit's run of this callback.", measured.energy_j)
        elif unlogged:
            logger.warning(
                "mlflow-green: a Trainer.fit ended before it began training (Lightning's Tuner: lr_find or "
                "scale_batch_size): its %.1f J are not logged. Put LearningRateFinder / BatchSizeFinder in the "
                "Trainer's callbacks instead (their trials are billed to the fit's run, as other), or run the "
                "tuner inside mlflow_green.track().", measured.energy_j)


def _inside_a_block() -> bool:
    """True inside a ``mlflow_green.track()`` block on this thread (it measures whatever runs in it)."""
    from mlflow_green.training.outer_calls import MeasuredBlock, outer_calls

    try:
        return any(isinstance(call, MeasuredBlock) for call in outer_calls(exclude=None))
    except Exception:
        return False


def end_unbegun_fit(session: Any, trainer: Any, tracker: Any, status: str, resumed: Any = None) -> None:
    """A fit that ended between the callback's ``setup`` and its ``on_fit_start`` (``configure_optimizers``
    raising, a checkpoint that cannot be restored, another callback's ``setup``, a tuner's trial failing, Ctrl-C
    meanwhile): its run ends ``status`` with what ``tracker`` measured since ``setup`` — resuming the checkpoint
    state ``resumed`` (``ckpt_path``'s, restored before the failure) as ``on_fit_start`` would have. Single process
    only (binding a DDP fit's run is a collective, which a rank that failed alone must not enter); else the tracker
    is stopped. Returns None."""
    if tracker is None or not tracker.running or session.dist.distributed:
        return stop_unused(tracker)
    try:
        if resumed is not None:
            session.load_state_dict(resumed)
        bind_trainer_run(session, trainer)
        session.begin_fit(planned_epochs=0, steps_done=getattr(trainer, "global_step", 0) or 0, tracker=tracker)
        session.end_fit(status)
    except Exception as exc:  # measurement never hides the user's exception
        logger.warning("mlflow-green: could not log the fit that failed before it began: %s", exc)
        stop_unused(tracker)
    return None
