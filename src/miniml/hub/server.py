"""``miniml hub up | down | status``: run the team's MLflow tracking server in the background.

``up`` checks everything a start needs first (no hub already running from this MINIML_HOME, the port
free, the database reachable, the bucket there and the credentials accepted), then starts ``mlflow server
--serve-artifacts`` in its own process group: clients talk only to the server, which reads and writes the
S3 bucket for them, so members need no S3 credentials. It waits for ``/health``, and only then writes
``MINIML_HOME/hub/hub.json`` (pid, URL, redacted settings) and ``MINIML_HOME/hub/env`` (the
``MLFLOW_TRACKING_URI`` line members source). A server that does not come up is stopped and leaves
nothing behind. The database URI reaches the server through the environment, not its command line, and
no file miniml writes holds a password.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import miniml.paths as paths
from miniml.errors import ConfigError, MinimlError
from miniml.hub.config import HubConfig
from miniml.io import atomic_write_json, atomic_write_text
from miniml.objectstore import S3Location, S3Store
from miniml.registry.backend import first_line, redact


class HubError(MinimlError):
    """The hub cannot start, or is not in the state a command needs."""


@dataclass(frozen=True)
class HubState:
    """What ``hub.json`` records about a running hub (no secrets)."""

    pid: int
    url: str
    health_url: str
    backend_store: str  # redacted
    artifacts_destination: str
    log: str
    started_at: str


def hub_dir() -> Path:
    return paths.home() / "hub"


def state_file() -> Path:
    return hub_dir() / "hub.json"


def env_file() -> Path:
    """``MLFLOW_TRACKING_URI=...`` for members: ``source $MINIML_HOME/hub/env``."""
    return hub_dir() / "env"


# ---------------------------------------------------------------- up


def up(cfg: HubConfig, *, foreground: bool = False) -> HubState:
    """Start the hub's MLflow server and wait until it answers; ``foreground`` runs it in this process."""
    running = read_state()
    if running is not None and alive(running.pid):
        raise HubError(
            f"the hub is already running at {running.url} (pid {running.pid})",
            hint="`miniml hub status` shows it; `miniml hub down` stops it",
        )
    check_port(cfg.host, cfg.port)
    check_backend(cfg.backend_store_uri)
    check_artifacts(cfg)
    command, env = server_command(cfg)
    if foreground:
        os.execvpe(command[0], command, env)  # compose / systemd: the server becomes this process
    clear_state()
    hub_dir().mkdir(parents=True, exist_ok=True)
    log = hub_dir() / "server.log"
    with log.open("ab") as sink:
        proc = subprocess.Popen(
            command, env=env, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
    state = HubState(
        pid=proc.pid,
        url=cfg.url,
        health_url=f"{local_url(cfg)}/health",
        backend_store=redact(cfg.backend_store_uri),
        artifacts_destination=cfg.artifacts_destination,
        log=str(log),
        started_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )
    try:
        wait_healthy(proc, state, cfg.start_timeout_s, cfg.backend_store_uri)
    except BaseException:
        stop_group(proc.pid)
        raise
    atomic_write_json(state_file(), asdict(state))
    atomic_write_text(env_file(), f"export MLFLOW_TRACKING_URI={state.url}\n")
    return state


def server_command(cfg: HubConfig) -> tuple[list[str], dict[str, str]]:
    """The ``mlflow server`` command line and environment (the database URI goes in the environment)."""
    command = [sys.executable, "-m", "mlflow", "server", "--host", cfg.host, "--port", str(cfg.port)]
    command += ["--workers", str(cfg.workers), "--serve-artifacts"]
    command += ["--artifacts-destination", cfg.artifacts_destination]
    if cfg.allowed_hosts:
        command += ["--allowed-hosts", cfg.allowed_hosts]
    env = {**os.environ, "MLFLOW_BACKEND_STORE_URI": cfg.backend_store_uri}
    env.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    # MLflow's job runner (GenAI judges, trace rollups) starts seven huey worker processes, about 1.2 GB,
    # that a miniml hub never uses; a team that wants them sets the variable to true.
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    if cfg.s3_endpoint_url:
        env["MLFLOW_S3_ENDPOINT_URL"] = cfg.s3_endpoint_url
    env.pop("MLFLOW_TRACKING_URI", None)
    return command, env


def local_url(cfg: HubConfig) -> str:
    host = "127.0.0.1" if cfg.host in {"0.0.0.0", "::", ""} else cfg.host
    return f"http://{host}:{cfg.port}"


def check_port(host: str, port: int) -> None:
    """Fail with one line if something already listens on ``host:port``."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                raise HubError(
                    f"port {port} on {host} is already in use",
                    hint="stop what listens there, or pick another port: --port N or `port:` in hub.yaml",
                ) from None
            raise HubError(f"cannot listen on {host}:{port}: {err.strerror}", hint="check `host:`") from None


def check_backend(uri: str) -> None:
    """Connect to the backend database once, so a wrong URI fails here with one line."""
    if uri.startswith("sqlite"):
        return
    import sqlalchemy
    from sqlalchemy.exc import SQLAlchemyError

    args = {"connect_timeout": 5} if uri.startswith("postgresql") else {}
    try:
        engine = sqlalchemy.create_engine(uri, connect_args=args)
        with engine.connect():
            pass
        engine.dispose()
    except (SQLAlchemyError, ImportError, ValueError) as err:
        message = _scrub(first_line(getattr(err, "orig", None) or err), uri)
        raise ConfigError(
            f"cannot connect to the hub's backend store {redact(uri)}: {message}",
            hint="is the database running? check backend_store_uri; put the password in PGPASSWORD",
        ) from None


def check_artifacts(cfg: HubConfig) -> None:
    """For an S3 destination: the bucket exists and the server's credentials may use it."""
    if cfg.artifacts_destination.startswith("s3://"):
        location = S3Location.parse(cfg.artifacts_destination)
        S3Store(location.bucket, endpoint=cfg.s3_endpoint_url).check()


def wait_healthy(proc: subprocess.Popen[bytes], state: HubState, timeout: float, secret_uri: str) -> None:
    """Return once ``/health`` answers 200; a server that exits or hangs is a HubError (its last log line)."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise HubError(
                f"the MLflow server exited with code {proc.returncode} while starting: "
                f"{_scrub(last_log_line(Path(state.log)), secret_uri)}",
                hint=f"full log: {state.log}",
            )
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(state.health_url, timeout=2).status_code == 200:
                return
        time.sleep(0.25)
    raise HubError(
        f"the MLflow server did not answer {state.health_url} within {timeout:.0f} s",
        hint=f"see {state.log}; raise start_timeout_s on a slow machine",
    )


def last_log_line(log: Path) -> str:
    """The last line of the server's log that says something (skipping tracebacks' frames)."""
    try:
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return "(no log)"
    useful = [ln.strip() for ln in lines if ln.strip() and not ln.startswith((" ", "\t", "Traceback"))]
    return (useful or ["(empty log)"])[-1][:300]


def _scrub(text: str, uri: str) -> str:
    """``text`` without the database password of ``uri``, wherever it appears."""
    creds = uri.partition("://")[2].rpartition("@")[0]
    password = creds.partition(":")[2]
    return text.replace(password, "***") if password else text


# ---------------------------------------------------------------- down / status


def down() -> HubState | None:
    """Stop the hub started from this MINIML_HOME; None when none was running."""
    state = read_state()
    if state is None:
        return None
    if alive(state.pid) and is_mlflow(state.pid):
        stop_group(state.pid)
    clear_state()
    return state


def status() -> tuple[HubState | None, bool]:
    """The recorded hub (None if none) and whether it answers ``/health`` now."""
    import httpx

    state = read_state()
    if state is None or not alive(state.pid):
        return state, False
    try:
        return state, httpx.get(state.health_url, timeout=3).status_code == 200
    except httpx.HTTPError:
        return state, False


def read_state() -> HubState | None:
    try:
        return HubState(**json.loads(state_file().read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None


def clear_state() -> None:
    for path in (state_file(), env_file()):
        path.unlink(missing_ok=True)


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie child of this process is reaped and counts as gone)."""
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    with contextlib.suppress(OSError):
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True


def is_mlflow(pid: int) -> bool:
    """Whether ``pid`` is still an MLflow server (not a reused pid); True where /proc is missing."""
    try:
        return b"mlflow" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return not Path("/proc").is_dir()


def stop_group(pid: int, timeout: float = 20) -> None:
    """SIGTERM the server's process group (its workers too), then SIGKILL what is left."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and alive(pid):
            time.sleep(0.1)
        if not alive(pid):
            return
