"""``miniml ui``: the MLflow UI (an ``mlflow server`` process) on the store miniml tracks into.

For the embedded store it is pointed at ``MINIML_HOME/mlflow/mlflow.db`` with artifacts beside it; for a
SQL ``MLFLOW_TRACKING_URI`` (PostgreSQL, ...) it serves that database. A tracking *server* URI already has
a UI, so that is an error that says where to look.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from miniml.errors import RegistryError
from miniml.registry.backend import (
    default_tracking_uri,
    embedded_artifact_root,
    get_client,
    is_embedded,
    redact,
)


def ui_command(host: str = "127.0.0.1", port: int = 5000, *, workers: int = 1) -> list[str]:
    """The ``mlflow server`` command line for the current tracking store."""
    uri = default_tracking_uri()
    if uri.startswith(("http://", "https://", "databricks")):
        raise RegistryError(
            f"MLFLOW_TRACKING_URI is a tracking server ({redact(uri)}); it serves its own UI",
            hint="open that URL in a browser, or unset MLFLOW_TRACKING_URI for the embedded store",
        )
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri]
    if is_embedded(uri):
        cmd += ["--default-artifact-root", embedded_artifact_root().as_uri(), "--no-serve-artifacts"]
    return [*cmd, "--host", host, "--port", str(port), "--workers", str(workers)]


def ui_environment() -> dict[str, str]:
    """Environment for the UI process: no background job runner (a viewer needs none), no telemetry."""
    env = dict(os.environ)
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    env.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    return env


def run_ui(host: str = "127.0.0.1", port: int = 5000) -> int:
    """Run the MLflow UI in the foreground until it exits or Ctrl-C; returns its exit code."""
    cmd = ui_command(host, port)
    check_port_free(host, port)
    get_client()  # create / migrate the store first, with miniml's artifact root
    print(f"MLflow UI on http://{host}:{port} (store: {redact(cmd[5])}); Ctrl-C to stop", file=sys.stderr)
    proc = subprocess.Popen(cmd, env=ui_environment())
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        return 0


def check_port_free(host: str, port: int) -> None:
    """A clear error now rather than a server traceback later when ``host:port`` is taken."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError as err:
            raise RegistryError(
                f"cannot serve the UI on {host}:{port}: {err.strerror or err}",
                hint="pick another --port or --host",
            ) from None
