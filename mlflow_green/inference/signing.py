"""Signing a ``green`` evaluation: the same signed manifest as a training run, made by the evaluator.

With ``MLFLOW_GREEN_SIGNING_KEY`` set where ``mlflow.models.evaluate(..., evaluators="green")``
runs, the evaluator signs its run once the figures are logged
(:func:`~mlflow_green.record.run_signature.sign_run`): the run id, every ``green/`` metric's latest
value, every ``green.`` tag and the SHA-256 of ``green/inference_report.json`` (and of
``green/report.json`` when the run has one). Before signing it checks that what it logged is what
the server holds, and it signs only values it can vouch for:

- an evaluation-only run: everything green in it was written by this evaluation (or is one of
  the hardware and region tags this host puts on every run it creates);
- a training run signed before (by this key, or one in ``MLFLOW_GREEN_TRUSTED_KEYS``): the
  earlier signature must still verify except for the values this evaluation wrote, then the run
  is signed again so that it verifies with the inference figures in it;
- a training run with green values no valid signature covers: not signed (a warning says why) —
  the evaluator did not measure the training, so it does not vouch for it.

Without a signing key nothing is signed and nothing is read.

Example::

    signer = EvaluationSigner.from_env()       # None without MLFLOW_GREEN_SIGNING_KEY
    if signer is not None:
        signer.sign(client, run_id, metrics, tags, document)
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlflow_green.record import schema
from mlflow_green.record.signing import SigningKey, TrustedKeys

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Metric

logger = logging.getLogger(__name__)

WRITER = "this evaluation"


@dataclass(frozen=True)
class EvaluationSigner:
    """The evaluator's signing key, and the keys an earlier signature of the run may be by.

    Example::

        EvaluationSigner.from_env({"MLFLOW_GREEN_SIGNING_KEY": "/secure/green-signing.key"})
    """

    key: SigningKey
    prior_keys: TrustedKeys

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> EvaluationSigner | None:
        """The signer configured by ``MLFLOW_GREEN_SIGNING_KEY`` (and ``MLFLOW_GREEN_TRUSTED_KEYS``);
        None when no signing key is set.

        Raises:
            SignatureError: A key cannot be read (before anything is measured).
        """
        key = SigningKey.from_env(environ)
        if key is None:
            return None
        return cls(key, TrustedKeys.from_env(environ))

    def sign(self, client: MlflowClient, run_id: str, metrics: Sequence[Metric], tags: Mapping[str, str],
             document: Mapping[str, Any]) -> bool:
        """Sign the evaluation run after its figures were logged; False (with a warning) when refused
        or when the server could not be reached — the figures stay logged, unsigned."""
        from mlflow_green.record.run_context import green_context_tags
        from mlflow_green.record.run_signature import WriteLedger, sign_run

        ledger = WriteLedger()
        ledger.observe({"op": "metrics", "metrics": [[m.key, m.value, m.timestamp, m.step] for m in metrics]})
        ledger.observe({"op": "tags", "tags": dict(tags)})
        stored = json.loads(json.dumps(document))  # as the artifact reads back (JSON keys are strings)
        ledger.observe({"op": "report", "artifact_file": schema.INFERENCE_REPORT_ARTIFACT, "report": stored})
        try:
            return sign_run(client, run_id, self.key, expected=ledger.expected(), writer=WRITER, covered_only=True,
                            prior_keys=self.prior_keys, vouched_tags=green_context_tags())
        except Exception as exc:  # the figures are logged; a signature that could not be written is a warning
            logger.warning("mlflow-green: evaluation run %s is not signed: %s: %s", run_id, type(exc).__name__, exc)
            return False
