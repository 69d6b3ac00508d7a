"""Going through an ``MlflowClient``: its stores, its public API, and a green server's ``/green/api``.

:func:`_registry_store` reaches the client's registry store (its tracking store:
:func:`mlflow_green.record.store_access.tracking_store`);
:class:`_ClientTracking` and :class:`_ClientRegistry` offer the store methods ranking uses over
the client's public API (for file stores and servers whose stores cannot be reached); and
:func:`_rank_via_api` asks a remote ``mlflow server --app-name green`` to rank server-side.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from mlflow_green.errors import NotFoundError, RankRequestError
from mlflow_green.ranking.leaderboard import Ranking

if TYPE_CHECKING:
    from mlflow import MlflowClient

logger = logging.getLogger("mlflow_green.ranking")

API_PATH = "/green/api"
"""Where ``mlflow server --app-name green`` serves the ranking JSON API (under the static prefix)."""


# --- store access ----------------------------------------------------------------------------


def _registry_store(client: MlflowClient) -> Any:
    try:
        return client._get_registry_client().store
    except Exception:
        return _ClientRegistry(client)


class _ClientTracking:
    """The tracking-store methods ranking uses, over an ``MlflowClient``'s public API."""

    def __init__(self, client: MlflowClient) -> None:
        self.client = client

    def get_experiment_by_name(self, name: str) -> Any:
        return self.client.get_experiment_by_name(name)

    def get_experiment(self, experiment_id: str) -> Any:
        return self.client.get_experiment(experiment_id)

    def search_experiments(self, *, view_type: Any, max_results: int, page_token: str | None) -> Any:
        return self.client.search_experiments(view_type=view_type, max_results=max_results, page_token=page_token)

    def search_runs(self, *, experiment_ids: list[str], filter_string: str, run_view_type: Any, max_results: int,
                    page_token: str | None) -> Any:
        return self.client.search_runs(experiment_ids, filter_string=filter_string, run_view_type=run_view_type,
                                       max_results=max_results, page_token=page_token)

    def get_run(self, run_id: str) -> Any:
        return self.client.get_run(run_id)


class _ClientRegistry:
    """The registry-store methods ranking uses, over an ``MlflowClient``'s public API."""

    def __init__(self, client: MlflowClient) -> None:
        self.client = client

    def get_registered_model(self, name: str) -> Any:
        return self.client.get_registered_model(name)

    def search_registered_models(self, *, max_results: int, page_token: str | None) -> Any:
        return self.client.search_registered_models(max_results=max_results, page_token=page_token)

    def search_model_versions(self, *, filter_string: str | None = None, max_results: int,
                              page_token: str | None) -> Any:
        return self.client.search_model_versions(filter_string=filter_string, max_results=max_results,
                                                 page_token=page_token)


# --- remote: the server's /green/api ---------------------------------------------------------

_API_UNAVAILABLE: set[str] = set()


def _rank_via_api(
    store: Any, refs: Sequence[str], model: str | None, metric: str | None, filter_string: str | None,
    measured_only: bool, by: str = "training",
) -> Ranking | None:
    """Ask ``mlflow server --app-name green``; ``None`` when the server has no green app."""
    from urllib.parse import quote

    from mlflow.utils.rest_utils import http_request

    creds = store.get_host_creds()
    if creds.host in _API_UNAVAILABLE:
        return None
    params: dict[str, Any] = {"measured_only": "true" if measured_only else "false"}
    if metric:
        params["metric"] = metric
    if by != "training":  # left out for training, so that servers without ``by`` still answer
        params["by"] = by
    if model is not None:
        endpoint = f"{API_PATH}/models/{quote(model, safe='')}/rank"
    else:
        endpoint = f"{API_PATH}/rank"
        params["experiment"] = list(refs)
        if filter_string:
            params["filter"] = filter_string
    response = http_request(creds, endpoint, "GET", params=params, max_retries=0)
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code == 200 and isinstance(body, dict) and "rows" in body:
        return Ranking.from_dict(body)
    if isinstance(body, dict) and body.get("type") in ("NotFoundError", "RankRequestError"):
        if body["type"] == "NotFoundError":
            raise NotFoundError(body.get("error", ""), kind=body.get("kind", ""), name=body.get("name", ""),
                                suggestions=body.get("suggestions") or [])
        raise RankRequestError(body.get("error", ""))
    if response.status_code in (404, 405):  # a server without the green app
        _API_UNAVAILABLE.add(creds.host)
        logger.info("mlflow-green: %s has no /green/api; ranking through the MLflow client API", creds.host)
        return None
    detail = body.get("error") if isinstance(body, dict) else response.text[:300]
    message = f"The tracking server answered {response.status_code} to {endpoint}: {detail}"
    if 400 <= response.status_code < 500:
        raise RankRequestError(message)
    from mlflow.exceptions import MlflowException

    raise MlflowException(message)
