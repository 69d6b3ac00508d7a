"""A fit logging straight into a PostgreSQL tracking store (no server in between): the earlier fits' steps read
from the store's table (``record.latest_steps``) as ``get_run`` tells them, and a second fit continuing them."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from types import SimpleNamespace

import lightning
import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric

from mlflow_green.integrations.lightning import GreenCallback
from mlflow_green.record import schema
from mlflow_green.record.latest_steps import latest_steps
from mlflow_green.training.run_history import holds_no_earlier_figures

pytestmark = pytest.mark.slow

sys.path.insert(0, str(Path(__file__).parents[1] / "integrations"))
from green_invariants import assert_green_invariants  # noqa: E402
from lightning_models import digits_classifier, loaders, quiet_trainer_kwargs  # noqa: E402

KEYS = (schema.ENERGY_KWH, "green/energy_test_kwh", "green/energy_per_sample_test_j")


def test_the_table_read_on_postgresql_tells_what_get_run_tells(postgres_uri: str, tmp_path: Path) -> None:
    client = MlflowClient(postgres_uri)
    experiment_id = client.create_experiment(f"latest-{time.time_ns()}", artifact_location=(tmp_path / "a").as_uri())
    run_id = client.create_run(experiment_id).info.run_id
    other = client.create_run(experiment_id).info.run_id
    empty = client.create_run(experiment_id).info.run_id
    points = [(schema.ENERGY_KWH, 0.3, 4), (schema.ENERGY_KWH, 0.1, 0), (schema.ENERGY_KWH, 0.2, 2),  # steps out of order
              ("green/energy_test_kwh", 0.05, 7), ("accuracy", 0.9, 11)]
    for run in (run_id, other):
        client.log_batch(run, metrics=[Metric(key, value, 1_000 + i, step) for i, (key, value, step) in enumerate(points)])
    client.log_metric(other, schema.ENERGY_KWH, 0.9, step=40)  # another run's rows are not mixed in

    assert latest_steps(client, run_id, KEYS) == {schema.ENERGY_KWH: 4, "green/energy_test_kwh": 7}
    assert latest_steps(client, other, KEYS) == {schema.ENERGY_KWH: 40, "green/energy_test_kwh": 7}
    through_get_run = SimpleNamespace(get_run=client.get_run)  # the same store seen as a REST store is read
    for run in (run_id, other, empty):
        assert latest_steps(client, run, KEYS) == latest_steps(through_get_run, run, KEYS)
    # a database server is never asked on the training thread (it can be down or slow): the bounded read asks it
    assert not holds_no_earlier_figures(client, empty, postgres_uri)


def test_a_second_fit_into_the_same_postgresql_run_continues_the_first_ones_steps_and_totals(
        postgres_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_GREEN_SPOOL_DIR", str(tmp_path / "spool"))
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(postgres_uri)
    try:
        experiment_id = mlflow.create_experiment(f"fits-{time.time_ns()}", artifact_location=(tmp_path / "a").as_uri())
        train, val = loaders()
        with mlflow.start_run(experiment_id=experiment_id) as run:
            first = GreenCallback()
            lightning.Trainer(max_epochs=2, callbacks=[first], **quiet_trainer_kwargs()).fit(digits_classifier(), train, val)
            first_j = first.session.fit_total.energy_j
            second = GreenCallback()
            lightning.Trainer(max_epochs=2, callbacks=[second], **quiet_trainer_kwargs()).fit(digits_classifier(), train, val)
            second_j = second.session.fit_total.energy_j
        client = MlflowClient(postgres_uri)
        finished = client.get_run(run.info.run_id)
        assert finished.info.status == "FINISHED"  # the user's run, ended by the user
        assert sorted(m.step for m in client.get_metric_history(run.info.run_id, schema.EPOCH_ENERGY_KWH)) == [0, 1, 2, 3]
        assert finished.data.metrics[schema.ENERGY_KWH] == pytest.approx((first_j + second_j) / 3.6e6, rel=1e-9)
        assert_green_invariants(run.info.run_id, client)
    finally:
        mlflow.set_tracking_uri(previous)
