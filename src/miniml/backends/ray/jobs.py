"""``miniml job``: a train, predict or pipeline run submitted to a Ray cluster as a Ray Job.

The cluster, not this machine, runs the command. :func:`submit` hands the head's Jobs API (the dashboard,
port 8265, through ``JobSubmissionClient``) the command line (``python -m miniml train train.yaml ...``) and
a ``runtime_env`` that carries:

- the project: the config's folder (``working_dir``), so the config and the files it names relative to
  itself travel with the job, and the job starts in that folder;
- this process's ``miniml`` package (``py_modules``): the cluster runs the code that validated the config;
- this process's miniml settings (:func:`~miniml.backends.ray.cluster.worker_env`: ``MINIML_HOME``, the
  tracking store, the data mirror, offline mode) without credentials: a key, token, secret or password is
  never sent (a job's ``runtime_env`` is readable by anyone who can see the dashboard); the cluster holds
  its own (a Kubernetes secret, an instance role).

Inside the job ``backend.address: auto`` joins the same cluster (Ray sets ``RAY_ADDRESS`` for the job). A
cluster with token authentication gets this machine's Ray token, as from Ray's own CLI.
The job's exit status is the command's: :func:`follow` streams the job's output until it ends; a failed
job's error is its last ``error:`` line (:func:`failure`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shlex
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from miniml.backends.ray.cluster import PACKAGE, import_ray, reachable, worker_env
from miniml.backends.ray.failures import first_line
from miniml.compute import BackendConfig
from miniml.config import StepConfig, load_config, read_yaml
from miniml.errors import ConfigError, MinimlError

log = logging.getLogger(__name__)
JobKind = Literal["train", "predict", "pipeline"]
DEFAULT_API = "http://127.0.0.1:8265"
AUTH_HINT = (
    "a cluster with token authentication needs its token here: ~/.ray/auth_token or RAY_AUTH_TOKEN "
    "(`ray get-auth-token` on the head prints it)"
)
API_HINT = (
    "start the head with `ray start --head` (its dashboard serves the Jobs API on port 8265), "
    "or pass --address http://HEAD:8265"
)
SECRET_WORDS = frozenset({"SECRET", "PASSWORD", "TOKEN", "KEY", "CREDENTIALS", "PASS"})  # name parts
TERMINAL = frozenset({"SUCCEEDED", "FAILED", "STOPPED"})
STOP_WAIT_S = 30.0
AUTH_MODE_VAR = "RAY_AUTH_MODE"
CHATTY_LOGGERS = (
    "ray.dashboard.modules.dashboard_sdk",
    "ray.dashboard.modules.job.sdk",
    "ray._private.runtime_env.packaging",
)


class JobFailed(MinimlError):
    """A submitted job ended without success; the CLI exits with the job's own exit status."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class PredictJobConfig(StepConfig):
    """A predict job's config file (``miniml job submit predict.yaml``): ``miniml predict``'s arguments."""

    env_section: ClassVar[str] = ""  # MINIML_PREDICT__* belongs to `miniml predict`, which the job runs

    model: str = Field(min_length=1, description="model URI: models:/NAME@ALIAS, models:/NAME/N or a folder")
    input: str = Field(min_length=1, description="JSONL or Parquet, relative to the config's folder")
    output: str = Field(min_length=1, description="JSONL to write: an absolute path on the cluster")
    batch_size: int = Field(256, ge=1, le=65536)
    top_k: int | None = Field(None, ge=1)
    backend: BackendConfig = Field(default_factory=lambda: BackendConfig.model_validate({}))

    @field_validator("output")
    @classmethod
    def _absolute_output(cls, value: str) -> str:
        if not Path(value).is_absolute():
            raise ValueError(
                "must be an absolute path on the cluster (a shared folder): a relative one would land in "
                "the job's temporary copy of the project"
            )
        return value


@dataclass(frozen=True)
class JobSpec:
    """What to run: a config, how to override it, and with which Python on the cluster."""

    config: Path
    overrides: tuple[str, ...] = ()
    backend: str | None = None  # --backend, passed on
    resume: bool = False
    working_dir: Path | None = None  # default: the config's folder
    python: str = "python"  # the cluster's interpreter (it must have miniml[ray] installed)
    kind: JobKind = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", job_kind(self.config))
        inside = self.config.resolve().is_relative_to(self.project.resolve())
        if not inside:
            raise ConfigError(
                f"{self.config} is outside the job's working directory {self.project}",
                hint="pass --working-dir with a folder that holds the config",
            )
        if self.kind == "predict" and self.resume:
            raise ConfigError("--resume applies to train and pipeline jobs, not to predict")

    @property
    def project(self) -> Path:
        return self.working_dir or self.config.resolve().parent

    def predict_config(self) -> PredictJobConfig:
        flags = {"backend": {"type": self.backend}} if self.backend else {}
        return load_config(PredictJobConfig, self.config, self.overrides, flags=flags)

    def arguments(self) -> list[str]:
        """The ``miniml`` command the job runs, from its working directory."""
        config = self.config.resolve().relative_to(self.project.resolve()).as_posix()
        if self.kind == "predict":
            return predict_arguments(self.predict_config())
        args = ["train", config] if self.kind == "train" else ["pipeline", "run", config]
        args += [f"--set={item}" for item in self.overrides]
        args += ["--backend", self.backend] if self.backend else []
        return args + (["--resume"] if self.resume else [])

    def entrypoint(self) -> str:
        return shlex.join([self.python, "-m", "miniml", *self.arguments()])


def job_kind(config: Path) -> JobKind:
    """Which command a config file is for, by the keys only its schema has."""
    keys = set(read_yaml(config))
    if "model_name" in keys:
        return "train"
    if "train" in keys:
        return "pipeline"
    if {"model", "input", "output"} <= keys:
        return "predict"
    raise ConfigError(
        f"cannot tell whether {config} is a train, predict or pipeline config",
        hint="a train config has model_name, a pipeline config has train, a predict config has model, "
        "input and output",
    )


def predict_arguments(config: PredictJobConfig) -> list[str]:
    args = ["predict", config.model, "--input", config.input, "--output", config.output]
    args += ["--batch-size", str(config.batch_size)]
    args += ["--top-k", str(config.top_k)] if config.top_k else []
    for key, value in config.backend.model_dump(exclude_defaults=True).items():
        args.append(f"--set=backend.{key}={value}")
    return args


def job_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The job's environment variables: :func:`worker_env` without credentials (see the module docstring)."""
    env = worker_env() if environ is None else environ
    return {k: v for k, v in env.items() if not SECRET_WORDS & set(k.upper().split("_"))}


def runtime_env(spec: JobSpec) -> dict[str, Any]:
    return {
        "working_dir": str(spec.project.resolve()),
        "py_modules": [str(PACKAGE)],
        "env_vars": job_env(),
        "excludes": [".git", ".venv", "__pycache__", "*.pyc"],
    }


# ---------------------------------------------------------------- the cluster's Jobs API


def api_address(address: str | None) -> str:
    """``--address``, else ``$RAY_API_SERVER_ADDRESS``, else an http ``$RAY_ADDRESS``, else the local head."""
    chosen = address or os.environ.get("RAY_API_SERVER_ADDRESS") or ""
    if not chosen and os.environ.get("RAY_ADDRESS", "").startswith(("http://", "https://")):
        chosen = os.environ["RAY_ADDRESS"]
    chosen = (chosen or DEFAULT_API).strip().rstrip("/")
    if "://" not in chosen:
        chosen = f"http://{chosen}"
    if not chosen.startswith(("http://", "https://")):
        raise ConfigError(f"--address {chosen} is not the Jobs API's http address", hint=API_HINT)
    return chosen


@contextlib.contextmanager
def _client_env() -> Iterator[None]:
    """While the client is built (it reads both then, once): the chosen address wins over ``$RAY_ADDRESS``
    (Ray's client lets the variable win), and this machine's Ray token goes with every request when it has
    one (:func:`use_local_token`); this process's environment is left as it was."""
    saved = {k: os.environ.pop(k) for k in ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS") if k in os.environ}
    mode = os.environ.get(AUTH_MODE_VAR)
    try:
        use_local_token()
        yield
    finally:
        os.environ.update(saved)
        if os.environ.get(AUTH_MODE_VAR) != mode:
            _restore_auth_mode(mode)


def connect(address: str | None = None) -> Any:
    """A ``JobSubmissionClient`` for the cluster's Jobs API, or one error line saying why not."""
    url = api_address(address)
    why = reachable(url)
    if why is not None:
        raise ConfigError(f"cannot reach the Ray Jobs API at {url} ({why})", hint=API_HINT)
    import_ray()
    from ray.job_submission import JobSubmissionClient

    for name in CHATTY_LOGGERS:  # "Uploading package ...", "WebSocket closed ..." on every job
        logging.getLogger(name).setLevel(logging.WARNING)
    with _client_env():
        try:
            return JobSubmissionClient(url)
        except client_errors() as err:
            raise ConfigError(
                f"the Ray Jobs API at {url} refused this client: {first_line(err)}", hint=AUTH_HINT
            ) from None


def use_local_token() -> None:
    """Send this machine's Ray token (``~/.ray/auth_token``, ``RAY_AUTH_TOKEN``) when it has one, as Ray's
    own CLI and ``ray.init`` do: Ray 2.60 turns token authentication on for a cluster started where a token
    exists."""
    try:  # pinned Ray: a private helper of `ray start` / `ray.init`
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )

        maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
    except Exception:  # a moved helper: the request goes without a token and a refusal says so
        log.debug("could not look for a Ray auth token", exc_info=True)


def _restore_auth_mode(mode: str | None) -> None:
    if mode is None:
        os.environ.pop(AUTH_MODE_VAR, None)
    else:
        os.environ[AUTH_MODE_VAR] = mode
    try:
        from ray._raylet import Config  # type: ignore[attr-defined]

        Config.initialize("")  # Ray caches the mode it read
    except Exception:
        log.debug("could not refresh Ray's config", exc_info=True)


def client_errors() -> tuple[type[BaseException], ...]:
    """What Ray's job client raises for a refused or failed request."""
    from ray.exceptions import AuthenticationError

    return (RuntimeError, ConnectionError, ValueError, OSError, AuthenticationError)


def submit(client: Any, spec: JobSpec) -> str:
    """Submit ``spec``; returns the job's id (``miniml-train-20261202-113000-ab12``)."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    job_id = f"miniml-{spec.kind}-{stamp}-{secrets.token_hex(2)}"
    try:
        return str(
            client.submit_job(
                entrypoint=spec.entrypoint(),
                runtime_env=runtime_env(spec),
                submission_id=job_id,
                metadata={"miniml.kind": spec.kind, "miniml.config": spec.config.name},
            )
        )
    except client_errors() as err:
        raise ConfigError(f"the Ray cluster refused the job: {first_line(err)}") from None


@dataclass(frozen=True)
class JobState:
    """One job as the Jobs API describes it."""

    id: str
    status: str  # PENDING RUNNING SUCCEEDED FAILED STOPPED
    message: str
    entrypoint: str
    driver_exit_code: int | None
    start_time: int | None = None  # ms since the epoch

    @property
    def done(self) -> bool:
        return self.status in TERMINAL

    @property
    def exit_status(self) -> int:
        """The command's exit status: 0 for a success (or a job still running), else its driver's code."""
        if self.status in ("SUCCEEDED", "PENDING", "RUNNING"):
            return 0
        if self.status == "STOPPED":
            return 130
        return self.driver_exit_code or 1


def state_of(details: Any) -> JobState:
    return JobState(
        id=str(details.submission_id or details.job_id),
        status=str(getattr(details.status, "value", details.status)),
        message=str(details.message or ""),
        entrypoint=str(details.entrypoint or ""),
        driver_exit_code=details.driver_exit_code,
        start_time=details.start_time,
    )


def _call(what: str, job_id: str, action: Callable[[], Any]) -> Any:
    try:
        return action()
    except client_errors() as err:
        if "404" in str(err) or "does not exist" in str(err):
            raise ConfigError(f"no job {job_id} on this cluster", hint="see `miniml job list`") from None
        raise ConfigError(f"cannot {what} job {job_id}: {first_line(err)}") from None


def job_state(client: Any, job_id: str) -> JobState:
    return state_of(_call("read", job_id, lambda: client.get_job_info(job_id)))


def job_logs(client: Any, job_id: str) -> str:
    return str(_call("read the logs of", job_id, lambda: client.get_job_logs(job_id)))


def list_jobs(client: Any) -> list[JobState]:
    """Submitted jobs, oldest first."""
    try:
        found = client.list_jobs()
    except client_errors() as err:
        raise ConfigError(f"cannot list the jobs: {first_line(err)}") from None
    jobs = [state_of(d) for d in found if d.submission_id]
    return sorted(jobs, key=lambda s: s.start_time or 0)


def follow(client: Any, job_id: str, write: Callable[[str], None]) -> JobState:
    """Stream the job's output to ``write`` until it ends; returns its final state."""
    job_state(client, job_id)  # an unknown id is one line, not a stream error

    async def tail() -> None:
        async for chunk in client.tail_job_logs(job_id):
            write(chunk)

    try:
        asyncio.run(tail())
    except KeyboardInterrupt:
        raise JobFailed(
            f"stopped following job {job_id}; the job goes on (`miniml job stop {job_id}` stops it)", 130
        ) from None
    except (RuntimeError, OSError) as err:  # the stream broke; the job may still be running
        raise ConfigError(
            f"lost the log stream of job {job_id}: {first_line(err)}",
            hint=f"the job goes on; `miniml job status {job_id}`",
        ) from None
    return wait(client, job_id, timeout_s=10.0)


def wait(client: Any, job_id: str, timeout_s: float) -> JobState:
    """The job's state once it ended, or its latest state after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    state = job_state(client, job_id)
    while not state.done and time.monotonic() < deadline:
        time.sleep(0.25)
        state = job_state(client, job_id)
    return state


def stop(client: Any, job_id: str) -> tuple[JobState, bool]:
    """Stop a running job and wait for it to end; returns its state and whether this call stopped it."""
    state = job_state(client, job_id)
    if state.done:
        return state, False
    _call("stop", job_id, lambda: client.stop_job(job_id))
    return wait(client, job_id, timeout_s=STOP_WAIT_S), True


def failure(state: JobState, logs: str) -> JobFailed:
    """The error a failed or stopped job ends the command with: its own last ``error:`` line."""
    if state.status == "STOPPED":
        return JobFailed(f"job {state.id} was stopped", state.exit_status)
    line = error_line(logs) or _message_line(state.message)
    code = f" (exit {state.driver_exit_code})" if state.driver_exit_code is not None else ""
    return JobFailed(f"job {state.id} failed{code}: {line}", state.exit_status)


def error_line(logs: str) -> str | None:
    """The last ``error: ...`` line miniml printed in the job, without its prefix."""
    for line in reversed(logs.splitlines()):
        if line.startswith("error: "):
            return line.removeprefix("error: ").strip()
    return None


def _message_line(message: str) -> str:
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    for line in reversed(lines):  # Ray's message ends with the job's last lines; a traceback ends with it
        if not line.startswith(("File ", "Traceback", "^", "20")):
            return line[:300]
    return lines[0][:300] if lines else "no reason given"


def describe(states: Sequence[JobState]) -> list[tuple[str, str, str, str]]:
    """Rows for ``miniml job list``: id, status, started (UTC), command."""
    rows = []
    for s in states:
        started = "-"
        if s.start_time:
            started = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(s.start_time / 1000))
        rows.append((s.id, s.status, started, s.entrypoint))
    return rows
