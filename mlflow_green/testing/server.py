"""A real ``mlflow server --app-name green`` on a free local port, for end-to-end tests.

Example::

    with GreenServer(tmp_path) as server:
        client = MlflowClient(server.url)
        ...
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

from mlflow_green.errors import GreenError


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class GreenServer:
    """Starts ``mlflow server --app-name green`` and stops it.

    Args:
        workdir: Folder for the sqlite store, the artifacts and the server log.
        backend_store_uri: Default: ``sqlite:///<workdir>/mlflow.db``.
        env: Extra environment variables for the server (e.g. a gate policy).
        extra_args: Extra ``mlflow server`` arguments (e.g. ``["--static-prefix", "/mlflow"]``).
        app_name: The ``--app-name`` (None for the plain MLflow server, as a baseline).
        workers: Server worker processes.
        startup_timeout_s: How long to wait for ``/health``.
    """

    def __init__(
        self,
        workdir: str | os.PathLike[str],
        *,
        backend_store_uri: str | None = None,
        env: Mapping[str, str] | None = None,
        extra_args: Sequence[str] = (),
        app_name: str | None = "green",
        workers: int = 1,
        startup_timeout_s: float = 90.0,
    ) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.backend_store_uri = backend_store_uri or f"sqlite:///{self.workdir / 'mlflow.db'}"
        self.env = dict(env or {})
        self.extra_args = list(extra_args)
        self.app_name = app_name
        self.workers = workers
        self.startup_timeout_s = startup_timeout_s
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = self.workdir / f"server-{self.port}.log"

    @property
    def url(self) -> str:
        """Base URL, without the static prefix."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def tracking_uri(self) -> str:
        """The URI for an ``MlflowClient`` of this server.

        Under ``--static-prefix`` MLflow 3 serves its REST API below the prefix, MLflow 2.x at the
        root (only its UI and ``ajax-api`` move): asked once of the running server.
        """
        prefix = self._static_prefix()
        if not prefix:
            return self.url
        if getattr(self, "_tracking_uri", None) is None:
            probe = f"{self.url}{prefix}/api/2.0/mlflow/experiments/get-by-name?experiment_name=Default"
            try:
                with urllib.request.urlopen(probe, timeout=10):
                    self._tracking_uri = self.url + prefix
            except urllib.error.HTTPError as exc:  # 404 page: not there; anything else: the API is there
                self._tracking_uri = self.url if exc.code == 404 and "json" not in (exc.headers.get("Content-Type") or "") else self.url + prefix
        return self._tracking_uri

    def start(self) -> GreenServer:
        """Start the server and wait until ``/health`` answers."""
        mlflow_cli = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or "mlflow"
        command = [
            mlflow_cli, "server",
            "--backend-store-uri", self.backend_store_uri,
            "--artifacts-destination", (self.workdir / "artifacts").as_uri(),
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--workers", str(self.workers),
            *self.extra_args,
        ]
        if self.app_name:
            command += ["--app-name", self.app_name]
        env = {
            **os.environ,
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "true",
            # MLflow's job runner starts ~7 worker processes: noise on a 2-core test machine
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            **self.env,
        }
        self.log_file = self.log_path.open("wb")
        self.process = subprocess.Popen(command, stdout=self.log_file, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.monotonic() + self.startup_timeout_s
        prefix = self._static_prefix()
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise GreenError(f"mlflow server exited with {self.process.returncode}:\n{self.log()}")
            for health in dict.fromkeys((f"{prefix}/health", "/health")):  # MLflow 2.x: /health is never prefixed
                try:
                    with urllib.request.urlopen(f"{self.url}{health}", timeout=2) as response:
                        if response.status == 200:
                            return self
                except OSError:
                    pass
            time.sleep(0.25)
        self.stop()
        raise GreenError(f"mlflow server did not answer on {self.url} within {self.startup_timeout_s:g} s:\n{self.log()}")

    def stop(self) -> None:
        """Stop the server (and its workers)."""
        if self.process is not None and self.process.poll() is None:
            try:
                os.killpg(self.process.pid, 15)
                self.process.wait(timeout=15)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.process.pid, 9)
                except ProcessLookupError:
                    pass
        self.process = None
        if getattr(self, "log_file", None) is not None:
            self.log_file.close()

    def log(self) -> str:
        """The server's output so far (for failure messages)."""
        try:
            return self.log_path.read_text(errors="replace")[-5000:]
        except OSError:
            return ""

    def _static_prefix(self) -> str:
        if "--static-prefix" in self.extra_args:
            return self.extra_args[self.extra_args.index("--static-prefix") + 1].rstrip("/")
        return ""

    def __enter__(self) -> GreenServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
