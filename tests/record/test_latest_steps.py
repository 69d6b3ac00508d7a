"""The latest step of chosen metrics of a run: read from a SQL store's table, the same as ``get_run`` tells."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from typing import Any

import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric

from mlflow_green.record import schema
from mlflow_green.record.latest_steps import latest_steps

KEYS = (schema.ENERGY_KWH, "green/energy_test_kwh", "green/energy_per_sample_test_j")


class ThroughGetRun:
    """A client of the same store seen only through its public calls (as a REST or file store is read)."""

    def __init__(self, client: MlflowClient) -> None:
        self._client = client

    def get_run(self, run_id: str) -> Any:
        return self._client.get_run(run_id)

    def get_metric_history(self, run_id: str, key: str) -> Any:
        return self._client.get_metric_history(run_id, key)


@contextlib.contextmanager
def _locked() -> Iterator[Any]:
    raise RuntimeError("database is locked")
    yield


class TableFails(ThroughGetRun):
    """A client of the same SQL store whose sessions fail (a locked or broken database) while its run API answers."""

    def __init__(self, client: MlflowClient) -> None:
        super().__init__(client)
        store = copy.copy(client._tracking_client.store)  # a real SqlAlchemyStore, its sessions failing
        store.ManagedSessionMaker = _locked
        self._tracking_client = type("Tracking", (), {"store": store})()


def _run_with_points(client: MlflowClient, experiment_id: str) -> str:
    run_id = client.create_run(experiment_id).info.run_id
    points = [(schema.ENERGY_KWH, 0.3, 4), (schema.ENERGY_KWH, 0.1, 0), (schema.ENERGY_KWH, 0.2, 2),  # steps out of order
              ("green/energy_test_kwh", 0.05, 7), ("accuracy", 0.9, 11)]
    client.log_batch(run_id, metrics=[Metric(key, value, 1_000 + i, step) for i, (key, value, step) in enumerate(points)])
    return run_id


def test_a_sql_store_gives_each_held_keys_highest_step_and_leaves_the_others_out(store: tuple[MlflowClient, str]) -> None:
    client, experiment_id = store
    run_id = _run_with_points(client, experiment_id)
    other = _run_with_points(client, experiment_id)  # another run's rows are not mixed in
    client.log_metric(other, schema.ENERGY_KWH, 0.9, step=40)
    assert latest_steps(client, run_id, KEYS) == {schema.ENERGY_KWH: 4, "green/energy_test_kwh": 7}
    assert latest_steps(client, other, KEYS) == {schema.ENERGY_KWH: 40, "green/energy_test_kwh": 7}


def test_the_table_read_tells_what_get_run_tells(store: tuple[MlflowClient, str]) -> None:
    client, experiment_id = store
    run_id = _run_with_points(client, experiment_id)
    empty = client.create_run(experiment_id).info.run_id
    for run in (run_id, empty):
        assert latest_steps(client, run, KEYS) == latest_steps(ThroughGetRun(client), run, KEYS)
    assert latest_steps(client, empty, KEYS) == {}


def test_a_failing_table_read_is_asked_through_get_run(store: tuple[MlflowClient, str]) -> None:
    client, experiment_id = store
    run_id = _run_with_points(client, experiment_id)
    assert latest_steps(TableFails(client), run_id, KEYS) == {schema.ENERGY_KWH: 4, "green/energy_test_kwh": 7}


def test_an_unknown_run_holds_nothing_in_the_table_and_get_run_raises(store: tuple[MlflowClient, str]) -> None:
    client, _ = store
    assert latest_steps(client, "0" * 32, KEYS) == {}  # the callers take both as a run holding no figures
    with pytest.raises(Exception, match="(?i)not found|does not exist"):
        latest_steps(ThroughGetRun(client), "0" * 32, KEYS)


def test_a_sql_store_is_read_from_its_table_without_get_run(store: tuple[MlflowClient, str]) -> None:
    """The read that costs 5-12 ms on sqlite is not made: a client whose run API fails still gets the steps."""
    client, experiment_id = store
    run_id = _run_with_points(client, experiment_id)

    class TableOnly:
        _tracking_client = client._tracking_client

        def get_run(self, run_id: str) -> Any:
            raise AssertionError("get_run called")

    assert latest_steps(TableOnly(), run_id, KEYS) == {schema.ENERGY_KWH: 4, "green/energy_test_kwh": 7}


def test_a_local_sqlite_store_tells_at_once_that_a_run_holds_no_earlier_figures(store: tuple[MlflowClient, str],
                                                                                   tracking_uri: str) -> None:
    from mlflow_green.training.run_history import holds_no_earlier_figures

    client, experiment_id = store
    new_run = client.create_run(experiment_id).info.run_id
    client.log_metric(new_run, "accuracy", 0.9, step=3)  # the user's own metrics are not earlier fits' figures
    with_fit = _run_with_points(client, experiment_id)
    with_evaluation = client.create_run(experiment_id).info.run_id
    client.log_metric(with_evaluation, "green/energy_per_sample_test_j", 0.01, step=0)  # an evaluation's figures only
    assert tracking_uri.startswith("sqlite:///")
    assert holds_no_earlier_figures(client, new_run, tracking_uri)
    assert not holds_no_earlier_figures(client, with_fit, tracking_uri)  # read in full (run_history.earlier_fits)
    assert not holds_no_earlier_figures(client, with_evaluation, tracking_uri)
    assert not holds_no_earlier_figures(TableFails(client), new_run, tracking_uri)  # not known so: read the usual way
    assert not holds_no_earlier_figures(ThroughGetRun(client), new_run, tracking_uri)  # not a SQL store's client
    # a server's URI (a store that can be down or slow) is never asked on the training thread
    assert not holds_no_earlier_figures(client, new_run, "postgresql://db.example/mlflow")
    assert not holds_no_earlier_figures(client, new_run, "http://127.0.0.1:5000")


def test_a_local_sqlite_store_locked_by_another_writer_is_not_waited_for_on_the_training_thread(
        store: tuple[MlflowClient, str], tracking_uri: str) -> None:
    """Another process's long write holds the database: the training thread's read gives up within a fraction of a
    second (MLflow's own sessions wait 20 s) and leaves the question to the bounded read; the store's later sessions
    wait as MLflow set them to."""
    import sqlite3
    import threading
    import time

    from mlflow_green.training.run_history import holds_no_earlier_figures

    client, experiment_id = store
    run_id = client.create_run(experiment_id).info.run_id
    locker = sqlite3.connect(tracking_uri.removeprefix("sqlite:///"), timeout=0, isolation_level=None, check_same_thread=False)
    locker.execute("BEGIN EXCLUSIVE")  # a writer of another connection (as another process) holding the file
    try:
        started_s = time.monotonic()
        assert not holds_no_earlier_figures(client, run_id, tracking_uri)
        assert time.monotonic() - started_s < 2.0
        # the pooled connection's wait is MLflow's again: a read started now waits for the lock, and gets its answer
        # once the writer is done
        threading.Timer(0.5, locker.execute, ("COMMIT",)).start()
        assert latest_steps(client, run_id, KEYS) == {}
    finally:
        time.sleep(0.6)
        locker.close()
    assert holds_no_earlier_figures(client, run_id, tracking_uri)
