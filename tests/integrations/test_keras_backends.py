"""GreenCallback on Keras's TensorFlow, torch and JAX backends: every way a fit ends, input waits, samples.

TensorFlow runs in this process (the suite's backend); torch and JAX each run the same cases
(``keras_backend_cases.py``) in one subprocess, since Keras fixes its backend at import.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

keras = pytest.importorskip("keras")

from green_invariants import assert_green_invariants  # noqa: E402

from mlflow_green.record import schema  # noqa: E402

CASES = Path(__file__).with_name("keras_backend_cases.py")


def _run_subprocess(backend: str, out: Path) -> tuple[dict, MlflowClient]:
    pytest.importorskip(backend)
    # JAX compiles each case's fit anew (a new model, new jitted functions): its persistent cache, kept in this
    # test's folder, serves the cases' identical programs from the first compile (55.7 s -> 44.6 s on 2 cores)
    env = {**os.environ, "JAX_COMPILATION_CACHE_DIR": str(out / "jax-cache"), "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
           "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}
    done = subprocess.run([sys.executable, str(CASES), backend, str(out)], capture_output=True, text=True, timeout=600,
                          env=env if backend == "jax" else None)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads((out / "result.json").read_text()), MlflowClient(f"sqlite:///{out / 'mlflow.db'}")


def _report(client: MlflowClient, run_id: str, tmp_path: Path) -> dict:
    return json.loads(Path(client.download_artifacts(run_id, schema.REPORT_ARTIFACT, str(tmp_path / run_id))).read_text())


def _check(backend: str, results: dict, client: MlflowClient, tmp_path: Path) -> None:
    for name, result in results.items():
        assert "error" not in result, f"{name}: {result.get('traceback')}"

    def run(name: str, key: str = "run_id"):
        return client.get_run(results[name][key])

    # Any way a fit ends outside the train step: our run ends at that moment, with the right status.
    for name, raised, status in (
        ("checkpoint_cannot_write", "NotADirectoryError", "FAILED"),
        ("keyboard_interrupt_in_a_callback", "KeyboardInterrupt", "KILLED"),
        ("broken_input_pipeline", None, "FAILED"),
    ):
        result, failed = results[name], run(name)
        assert raised is None or result["raised"] == raised, result
        assert failed.info.status == status, (name, failed.info.status)
        assert result["active_after"] is None, f"{name}: the failed run is still the active run"
        # the meters stopped when the fit ended, not 0.5 s later nor at exit
        assert failed.data.metrics[schema.DURATION_S] <= result["elapsed_s"] + 0.2, (name, failed.data.metrics, result)
        assert_green_invariants(failed.info.run_id, client)
    # Another callback's batch hook raising — a LambdaCallback's, a legacy on_batch_end, in the validation, Ctrl-C —
    # ends our run at that moment too; their hooks are their own again after it.
    for name, raised, status in (("lambda_at_batch_begin", "ValueError", "FAILED"), ("legacy_on_batch_end", "RuntimeError", "FAILED"),
                                 ("validation_batch_end", "RuntimeError", "FAILED"),
                                 ("interrupt_at_batch_end", "KeyboardInterrupt", "KILLED")):
        result = results["batch_hook_failures"][name]
        failed = client.get_run(result["run_id"])
        assert result["raised"] == raised and failed.info.status == status, (name, result, failed.info.status)
        assert result["active_after"] is None and result["wrapped_left"] == [], (name, result)
        assert failed.data.metrics[schema.DURATION_S] <= result["elapsed_s"] + 0.2, (name, failed.data.metrics, result)
        assert_green_invariants(failed.info.run_id, client)
    # A Ctrl-C that code inside the fit caught and dropped: raised again at the next hook, no batch after it
    dropped = results["ctrl_c_dropped_inside_the_fit"]
    assert (dropped["raised"] or "").startswith("KeyboardInterrupt") and "raised again" in dropped["raised"], dropped
    assert dropped["last_batch"] == [1, 1] and dropped["status"] == "KILLED", dropped
    assert not dropped["active_after"] and dropped["handler_back"], dropped
    # A callback after ours failing in the same start dispatch (fit, evaluate, predict): ended at once, not later or never
    assert results["later_callback_fails_at_train_begin"] == {
        "interrupt": {"raised": "KeyboardInterrupt", "status": "KILLED", "active": None},
        "oserror": {"raised": "OSError", "status": "FAILED", "active": None},
        "evaluate_interrupt": {"raised": "KeyboardInterrupt", "status": "KILLED", "active": None},
        "predict_interrupt": {"raised": "KeyboardInterrupt", "status": "KILLED", "active": None},
    }
    # Callbacks after ours at the fit's end: their work is in the fit (one raising there: FAILED, or KILLED for a
    # KeyboardInterrupt — it stayed FINISHED); our run is no longer MLflow's active run there, so one starting a run
    # of its own can (as without us), and a log_metric has MLflow start one — said by a warning; an evaluate given
    # our callback ends the fit first and is measured as a test evaluation in the fit's run (it was its validation)
    at_end = results["later_callback_at_train_end"]
    # — listed before ours too (it was then the fit's validation); one training on with our callback there ends the fit
    # FINISHED first (it ended FAILED, as a fit inside the fit), the new fit getting a run of its own
    for mode, raised, status, stray in (("logs", None, "FINISHED", True), ("raises", "OSError", "FAILED", False),
                                        ("interrupt", "KeyboardInterrupt", "KILLED", False), ("evaluates", None, "FINISHED", True),
                                        ("evaluates_listed_first", None, "FINISHED", True), ("starts_run", None, "FINISHED", False),
                                        ("refits", None, "FINISHED", False)):
        result = at_end[mode]
        assert (result["raised"], result["status"], result["stray"], result["warned"]) == (raised, status, stray, stray), (mode, result)
        assert result["ours_active_then"] == (mode == "evaluates_listed_first"), (mode, result)
        assert result["tested"] == mode.startswith("evaluates") and not result["nested_warning"], (mode, result)
        assert (result["later_run"] is not None) == (mode == "refits"), (mode, result)
        assert_green_invariants(result["run_id"], client)
    # A predict alone whose input fails (outside the step on TensorFlow): a FAILED run with its energy, not none
    result = results["predict_alone_with_failing_input"]
    assert result["raised"] is not None and result["status"] == "FAILED" and result["energy_predict_kwh"] > 0, result
    # An exception in Keras's own code (no hook sees it): ended FAILED within a look of the fit's frame
    # leaving the stack (two looks, a second apart), not when the process exits (the 3.5 s after it are not billed)
    result, failed = results["error_in_keras_own_code"], run("error_in_keras_own_code")
    assert result["raised"] == "ValueError" and failed.info.status == "FAILED", (result, failed.info.status)
    assert result["active_after"] is None, "the failed run is still the active run"
    assert failed.data.metrics[schema.DURATION_S] <= result["elapsed_s"] + 2.7, (failed.data.metrics, result)
    assert_green_invariants(failed.info.run_id, client)
    # An evaluate and a predict right after it (before the watch looked): the fit ends FAILED as they start, and
    # they are billed as themselves, not as the fit's validation
    result, failed = results["evaluate_right_after_an_error_in_keras_own_code"], run("evaluate_right_after_an_error_in_keras_own_code")
    assert result["raised"] == "ValueError" and failed.info.status == "FAILED" and result["active_after"] is None
    metrics = failed.data.metrics
    # ended as the evaluate's hooks began (its setup before them, slow on a loaded host, falls in the fit's run)
    assert metrics[schema.DURATION_S] <= result["until_evaluate_s"] + 0.2, (metrics, result)
    assert metrics[schema.ENERGY_VALIDATION_KWH] == 0.0, "no validation ran: the fit failed building it"
    assert result["eval_run_id"] == result["run_id"]  # logged into the fit's run, as after any fit
    for kind, samples in (("test", 128), ("predict", 192)):
        energy_kwh = metrics[f"green/energy_{kind}_kwh"]
        assert energy_kwh > 0 and metrics[f"green/energy_per_sample_{kind}_j"] == pytest.approx(
            energy_kwh * 3.6e6 / samples, rel=1e-6), (kind, metrics)
    assert_green_invariants(failed.info.run_id, client)
    # Evaluations inside an epoch — with the fit's callback (its validation) or without, in the middle of the epoch's
    # training or at its end, the epoch then cut short: every batch trained counted, the training after one is train
    for name, train, validation in (("with_ours_mid_epoch", 1280, 256), ("plain_mid_epoch", 1280, None),
                                    ("plain_at_epoch_end", 1280, None), ("plain_at_epoch_begin", 1280, None),
                                    ("plain_then_stopped", 640 + 7 * 64, None),
                                    ("with_ours_beside_validation", 1280, 2 * (128 + 64)),
                                    ("with_ours_bound_before_the_fit", 1280, 256), ("test_on_batch_mid_epoch", 1280, None)):
        result = results["evaluations_inside_epochs"][name]
        assert result["samples"] == {"train": train, **({"validation": validation} if validation else {})}, (name, result)
        metrics = client.get_run(result["run_id"]).data.metrics
        if name.startswith("with_ours"):  # 6 batch ends x 50 ms after it, each epoch: at 50 W, 15 J of training
            assert metrics[schema.ENERGY_TRAIN_KWH] * 3.6e6 >= 2 * 15.0 * 0.9, (metrics, result)
            assert metrics[schema.ENERGY_OTHER_KWH] < metrics[schema.ENERGY_TRAIN_KWH] / 2, (metrics, result)
        assert_green_invariants(result["run_id"], client)
    result = results["validation_input_fails_after_an_evaluate_inside_the_epoch"]
    assert result["raised"] is not None and result["status"] == "FAILED", result  # at once, not at the watch's look
    assert result["evaluate_wrapped"] is False, result
    assert_green_invariants(result["run_id"], client)
    # Steps of the user's own that count no samples: a cut epoch's finished batches x the batch size; evaluated samples
    # from the batches read (torch, JAX), else none (TensorFlow: said, and no figure per sample or FLOP/J computed
    # without them); a tuple inside a dict counted
    cases = results["steps_that_count_no_samples"]
    for name in ("stop", "raise", "stop_pair", "raise_pair"):
        status = "FAILED" if name.startswith("raise") else "FINISHED"
        assert cases[name]["samples"] == {"train": 640 + 5 * 64} and cases[name]["status"] == status, (name, cases[name])
        assert_green_invariants(cases[name]["run_id"], client)
    own = cases["own_test_step"]
    fit_metrics, test_metrics = client.get_run(own["run_id"]).data.metrics, client.get_run(own["test"]["run_id"]).data.metrics
    if backend == "tensorflow":  # its input read inside the step: nothing counts the rows
        assert own["samples"] == {"train": 640} and own["test"]["samples"] == {}, own
        assert schema.FLOP_PER_J not in fit_metrics and "green/energy_per_sample_test_j" not in test_metrics
    else:
        assert own["samples"] == {"train": 640, "validation": 200} and own["test"]["samples"] == {"test": 200}, own
        assert schema.FLOP_PER_J in fit_metrics
        assert test_metrics["green/energy_per_sample_test_j"] == pytest.approx(test_metrics["green/energy_test_kwh"] * 3.6e6 / 200)
    assert cases["pair_output"]["samples"] == {"predict": 200}, cases["pair_output"]
    result = results["validation_input_fails_at_the_next_epochs_first_batch"]
    assert result["status"] == "FAILED" and result["samples"] == {"train": 1280, "validation": 256}, result
    assert_green_invariants(result["run_id"], client)
    # A fit, an evaluate, a track() block measured anew right after it: each ends the failed fit as it begins, then
    # logs into a run of its own (not the failed one, still MLflow's active run until then); in the user's run, after
    # the failed fit's steps
    result = results["an_error_in_keras_own_code_leaves_no_run_active_in_the_except_block"]
    assert (result["active_in_except"], result["status_in_except"]) == (None, "FAILED"), result
    assert client.get_run(result["mine"]).data.params == {"trial": "1"} and not run("an_error_in_keras_own_code_leaves"
                                                                                    "_no_run_active_in_the_except_block").data.params
    result = results["new_callbacks_right_after_an_error_in_keras_own_code"]  # traceback filtering off: no handler
    for name in ("fit", "evaluate", "track"):
        failed, nxt = client.get_run(result[name]["failed"]), client.get_run(result[name]["next"])
        assert failed.info.status == "FAILED" and nxt.info.run_id != failed.info.run_id, (name, result)
        assert nxt.info.status == "FINISHED", (name, nxt.info.status)
        assert not any(key in failed.data.metrics for key in ("green/energy_test_kwh", "green/energy_predict_kwh")), name
        assert_green_invariants(failed.info.run_id, client)
    # and Ctrl-C is Python's own again after each (it stayed with the failed fit's watch, which swallowed every later one)
    assert result["sigint_after"] == [repr(signal.default_int_handler)] * 3, result["sigint_after"]
    # the failed fit ended as the next one began (its duration from its start until then), not at its watch's look
    assert client.get_run(result["fit"]["failed"]).data.metrics[schema.DURATION_S] <= result["fit"]["until_next_s"] + 0.2
    assert_green_invariants(result["fit"]["next"], client)
    users = result["users_run"]
    assert users["active"] == users["run_id"] and result["active_after"] is None, result
    assert sorted(m.step for m in client.get_metric_history(users["run_id"], schema.ENERGY_KWH)) == [0, 1, 2]
    assert_green_invariants(users["run_id"], client)
    # A fit that ends inside an epoch bills the samples that epoch trained (and no more).
    for name, batches in (("exception_in_the_first_epoch", 3), ("exception_in_a_later_epoch", 10 + 3),
                          ("a_batch_the_step_cannot_train", 3), ("a_step_that_raises_over_arrays", 3),
                          ("a_step_that_raises_over_arrays_after_a_train_on_batch", 3)):
        failed, samples = run(name), 64 * results[name]["batch_ends"]
        assert results[name]["raised"] is not None and failed.info.status == "FAILED", name
        assert samples == 64 * batches, (name, results[name])
        assert _report(client, failed.info.run_id, tmp_path)["samples"] == {"train": samples}, name
        metrics = failed.data.metrics
        assert metrics[schema.ENERGY_PER_SAMPLE_J] == pytest.approx(metrics[schema.ENERGY_KWH] * 3.6e6 / samples, rel=1e-6), name
        assert metrics[schema.FLOP_PER_J] > 0, name
        # the cut-short epoch's training is billed to train, not left to other (setup, teardown, the callback)
        assert metrics[schema.ENERGY_OTHER_KWH] < metrics[schema.ENERGY_TRAIN_KWH], (name, metrics)
        assert_green_invariants(failed.info.run_id, client)
    nxt = run("checkpoint_cannot_write", "next_run_id")
    assert nxt.info.run_id != results["checkpoint_cannot_write"]["run_id"], "the next fit logged into the failed run"
    assert nxt.info.status == "FINISHED"

    # A validation (an evaluate) that ends early: the samples of its finished batches are counted, as their energy is
    assert set(results["validation_cut_short"]) == {"input_fails", "callback_raises", "evaluate_alone"}, results["validation_cut_short"]
    for name, phase, samples in (("input_fails", "validation", 192), ("callback_raises", "validation", 128),
                                 ("evaluate_alone", "test", 128)):
        result = results["validation_cut_short"][name]
        failed = client.get_run(result["run_id"])
        assert result["raised"] is not None and failed.info.status == "FAILED", (name, result)
        counted = _report(client, result["run_id"], tmp_path)["samples"]
        assert counted == ({"train": 640, phase: samples} if phase == "validation" else {phase: samples}), (name, counted)
        metrics = failed.data.metrics
        if phase == "validation":  # FLOP/J counts the validation's forward passes too
            assert metrics[schema.FLOP_PER_J] > 0 and metrics[schema.ENERGY_VALIDATION_KWH] > 0, (name, metrics)
            assert_green_invariants(result["run_id"], client)
        else:
            assert metrics[schema.phase_energy_per_sample_key("test")] == pytest.approx(
                metrics[schema.ENERGY_TEST_KWH] * 3.6e6 / samples, rel=1e-6), name

    # The user's own run is never ended or overwritten.
    users = results["exception_in_the_users_run"]
    assert users["run_id"] == users["users_run_id"] == users["still_active"]
    assert run("exception_in_the_users_run").info.status == "FINISHED", "ended by the user's `with`, not FAILED by us"
    assert schema.ENERGY_KWH in run("exception_in_the_users_run").data.metrics

    # A budget stop mid-epoch is a clean stop on every backend (JAX: no "Array has been deleted").
    stopped = run("budget_stop_mid_epoch")
    assert results["budget_stop_mid_epoch"]["epochs"] == 1
    assert results["budget_stop_mid_epoch"]["batch_ends"] < 30, "stopped inside the epoch, not at its end"
    assert stopped.info.status == "FINISHED" and "budget exhausted" in stopped.data.tags[schema.TAG_BUDGET_STOP]
    assert_green_invariants(stopped.info.run_id, client)

    # samples_per_epoch counts a whole epoch; an epoch stopped cleanly mid-way (stop_training, a budget) its share
    assert results["samples_per_epoch_cut_short"]["train"] == 640 + 3 * 64
    assert_green_invariants(run("samples_per_epoch_cut_short").info.run_id, client)
    # A validation DataLoader of known size failing at epoch 1's second batch (JAX reads it in the guarded test step,
    # nothing wrapping it; TensorFlow in tf.data): FAILED there, with the two epochs trained and 1.5 passes evaluated.
    failed = results["validation_loader_of_known_size_fails"]
    assert failed["raised"] in ("OSError(OSError)", "UnknownError(OSError)") and failed["active_after"] is None, failed
    assert failed["samples"] == {"train": 512, "validation": 192}, failed
    assert run("validation_loader_of_known_size_fails").info.status == "FAILED"
    assert_green_invariants(run("validation_loader_of_known_size_fails").info.run_id, client)
    ended = results["samples_per_epoch_failed_mid_epoch"]  # an epoch ended by an exception: the same share
    for way, raised, status in (("callback", "RuntimeError", "FAILED"), ("ctrl_c", "KeyboardInterrupt", "KILLED"),
                                ("step", None, "FAILED"), ("input", None, "FAILED")):
        result = ended[way]  # the step's and the input's errors: the backend's own types (None: any)
        assert result["raised"] is not None and raised in (None, result["raised"]), (way, result)
        trained = result["trained_batches"]  # a callback: after 3; the 14th read: after 1 or 2 (Keras's reads before the fit)
        assert (trained == 3) if way in ("callback", "ctrl_c") else (1 <= trained <= 2), (way, result)
        assert result["train"] == 320 + 32 * result["trained_batches"], (way, result)
        assert client.get_run(ended[way]["run_id"]).info.status == status, way
        assert_green_invariants(ended[way]["run_id"], client)

    if backend == "torch":  # 300 training and 100 validation rows in 64-row batches, the last partial: rows counted
        iterable = results["torch_iterable_validation"]
        assert iterable["samples"] == {"train": 600, "validation": 200} and iterable["test"] == {"test": 100}, iterable
        assert_green_invariants(iterable["run_id"], client)

    # Input wait: torch and JAX read batches in Python (timed); TensorFlow reads inside the step.
    waited = run("input_wait").data.metrics
    data, train = waited[schema.ENERGY_DATA_KWH], waited[schema.ENERGY_TRAIN_KWH]
    if backend == "tensorflow":
        assert data == 0.0 and train > 0
    else:  # 16 reads of 50 ms at a constant 100 W: at least 80 J of input wait
        assert data * 3.6e6 >= 0.95 * 100.0 * 16 * 0.05, waited
    assert_green_invariants(run("input_wait").info.run_id, client)
    report = _report(client, results["input_wait"]["run_id"], tmp_path)
    assert report["samples"]["train"] == 2 * 8 * 64
    assert report["phases"]["train"]["devices"][0]["basis"] == "counter, apportioned by time share"

    # Samples of fit, validation, evaluate and predict; FLOP/J from them.
    evaluated = run("evaluate_and_predict").data.metrics
    assert evaluated[schema.phase_energy_per_sample_key("test")] == pytest.approx(evaluated[schema.ENERGY_TEST_KWH] * 3.6e6 / 200, rel=1e-6)
    assert evaluated[schema.phase_energy_per_sample_key("predict")] == pytest.approx(evaluated[schema.ENERGY_PREDICT_KWH] * 3.6e6 / 100, rel=1e-6)
    assert evaluated[schema.FLOP_PER_J] > 0
    report = _report(client, results["evaluate_and_predict"]["run_id"], tmp_path)
    assert report["samples"] == {"train": 2 * 640, "validation": 2 * 128, "test": 200, "predict": 100}
    assert_green_invariants(results["evaluate_and_predict"]["run_id"], client)

    # keras.applications.MobileNetV2 at 224: docs/schema.md's figures (test_keras_inspector.py counts them from the layers)
    assert results["inspect_mobilenet_v2"] == {"params": 3_538_984, "flops_per_sample": 601_549_544}

    # The inspector reads the variables the backend's own way; the figures are the same everywhere.
    # Conv2D(4, 3) on 8x8x1: 36 + 4 (filter 1 zeroed: 9); Dense(6) on 144: 864 + 6 (unit 2 zeroed: 144);
    # Dense(3) in bfloat16: 18 + 3. Biases start at zero (13). FLOPs: 144 x (2x9 + 1) + 6 x (2x144 + 1) + 3 x (2x6 + 1).
    # GreenCallback does nothing per batch: the batch hooks call the others only; every other hook sees the whole list.
    seen = results["batch_hooks_skip_ours"]
    whole = ["ListSeen", "GreenCallback", "ListSeen", "History"]
    assert seen["at_batches"] == [["ListSeen", "ListSeen", "History"]], seen
    assert seen["before"] == [[whole, False]] * 2 and seen["after"] == [[whole, True]] * 2, seen  # live figures: after ours
    assert seen["listed_after"] == whole
    assert [m.step for m in client.get_metric_history(seen["run_id"], schema.ENERGY_KWH)] == [0, 1]
    assert seen["failing_batches"] == [["ListSeen", "RaiseAtBatchEnd", "History"]] and seen["failing_after"] == [
        "GreenCallback", "ListSeen", "RaiseAtBatchEnd", "History"], seen
    assert run("batch_hooks_skip_ours", "failed_run_id").info.status == "FAILED"
    assert seen["own_batch_ends"] == 2 * 10  # a subclass's own batch hook: every batch of 2 epochs of 640 / 64
    assert run("batch_hooks_skip_ours", "own_run_id").info.status == "FINISHED"
    threads_safe = backend != "tensorflow"  # Keras dispatches batch hooks asynchronously on torch and JAX only
    assert results["async_batch_hooks"] == {"without": [threads_safe] * 3, "with": [threads_safe] * 3}, results["async_batch_hooks"]
    result = results["log_model_from_another_thread_during_a_fit"]  # the fit goes on; one point per step in its run
    assert result["raised"] is None and result["logged"] > 3, result
    assert run("log_model_from_another_thread_during_a_fit").info.status == "FINISHED"
    assert_green_invariants(result["run_id"], client)
    inspected = results["inspect_pruned"]
    assert inspected == {
        "params": 931,
        "params_nonzero": 931 - 9 - 144 - 13,
        "sparsity": pytest.approx(153 / 918),
        "structured_sparsity": pytest.approx(2 / 13),
        "size_bytes": 910 * 4 + 21 * 2,
        "flops_per_sample": 2736 + 1734 + 39,
        "weight_bits": pytest.approx((910 * 32 + 21 * 16) / 931),  # every parameter, biases too
    }, inspected


def test_tensorflow_backend(mlflow_experiment: str, tmp_path: Path) -> None:
    from keras_backend_cases import run_cases

    assert keras.backend.backend() == "tensorflow"
    _check("tensorflow", run_cases(tmp_path), MlflowClient(mlflow.get_tracking_uri()), tmp_path)


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_torch_and_jax_backends(backend: str, tmp_path: Path) -> None:
    results, client = _run_subprocess(backend, tmp_path)
    _check(backend, results, client, tmp_path)
