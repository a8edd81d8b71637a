"""A Ray cluster for the length of one command: join the one the config names, or start a local one.

``address: auto`` joins ``$RAY_ADDRESS``, else the cluster the last ``ray start --head`` on this machine
recorded (if it still answers), else starts a local cluster sized by ``workers`` and stops it when the
command ends, however it ends (a local cluster's processes also die with this process: Ray ties their fate
to the driver). ``local`` always starts one; ``HOST:PORT`` and ``ray://HOST:PORT`` must answer within a
few seconds. The cluster must hold ``workers × cpus_per_worker`` CPUs (and GPUs) before any work starts:
Ray would otherwise wait for resources that never come.

Workers get this process's miniml settings (``MINIML_*``, ``MLFLOW_*``, ``HF_*``, ``AWS_*`` ...) through the
job's ``runtime_env``; on a cluster miniml did not start, they also get this process's ``miniml`` package
(``py_modules``), so the driver and the workers run the same code.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import miniml.paths as paths
from miniml.compute import BackendConfig
from miniml.errors import ConfigError

log = logging.getLogger(__name__)
ENV_PREFIXES = ("MINIML_", "MLFLOW_", "HF_", "TRANSFORMERS_", "TOKENIZERS_", "AWS_")
PROBE_TIMEOUT_S = 3.0
INSTALL_HINT = "pip install 'miniml[ray]'"
JOB_CONFIG_VAR = "RAY_JOB_CONFIG_JSON_ENV_VAR"  # set by Ray in a submitted job's driver
PACKAGE = Path(__file__).resolve().parents[2]  # src/miniml


def import_ray() -> ModuleType:
    """The ``ray`` module, or a ConfigError naming the install command."""
    try:
        import ray
    except ImportError:
        raise ConfigError("backend ray needs Ray, which is not installed", hint=INSTALL_HINT) from None
    return ray


@dataclass(frozen=True)
class ClusterInfo:
    """The cluster a command runs on."""

    address: str  # what was joined, or "local" for a cluster this process started
    started: bool  # miniml started it (and stops it at the end)
    cpus: float
    gpus: float
    nodes: int

    def describe(self) -> str:
        where = "a local Ray cluster started for this command" if self.started else f"Ray at {self.address}"
        return f"{where} ({self.nodes} node(s), {self.cpus:g} CPUs, {self.gpus:g} GPUs)"


def worker_env() -> dict[str, str]:
    """The settings a worker needs to find the same home, tracking store, data mirror and offline mode."""
    env = {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIXES)}
    env["MINIML_HOME"] = str(paths.home())  # resolved: a relative or ~ path means nothing there
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env


def apply_env(env: dict[str, str]) -> None:
    """In a worker: the driver's settings of this command (:func:`worker_env`). A cluster outlives the
    command that joined it, so the settings its workers started with may be another command's."""
    os.environ.update(env)


def _host_port(address: str) -> tuple[str, int] | None:
    rest = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def reachable(address: str, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """None when ``address`` accepts a TCP connection, else why not (one short phrase)."""
    target = _host_port(address)
    if target is None:
        return "it is not HOST:PORT"
    try:
        with socket.create_connection(target, timeout=timeout):
            return None
    except TimeoutError:
        return f"no answer within {timeout:g} s"
    except OSError as err:
        return err.strerror or type(err).__name__


def recorded_address() -> str | None:
    """The GCS address the last ``ray start --head`` on this machine recorded, if any."""
    try:
        from ray._private.utils import read_ray_address  # pinned Ray: a private helper of `ray start`

        return read_ray_address(None) or None
    except Exception:  # no file, an unreadable one, or a moved helper: treat as "none recorded"
        return None


def choose_address(section: BackendConfig) -> str | None:
    """The address to join, or None to start a local cluster (see the module docstring)."""
    address = section.address
    if address == "local":
        return None
    if address == "auto":
        explicit = os.environ.get("RAY_ADDRESS", "").strip()
        if explicit:
            address = explicit
        else:
            found = recorded_address()
            if found and reachable(found, timeout=1.0) is None:
                return found
            return None
    why = reachable(address)
    if why is not None:
        raise ConfigError(
            f"cannot reach the Ray cluster at {address} ({why})",
            hint="start it with `ray start --head`, or fix backend.address (auto starts a local cluster)",
        )
    return address


def check_resources(info: ClusterInfo, section: BackendConfig, workers: int | None = None) -> None:
    """Refuse work the cluster cannot place (Ray would wait for it forever)."""
    count = workers or section.workers
    cpus, gpus = count * section.cpus_per_worker, count * section.gpus_per_worker
    where = "the local Ray cluster" if info.started else f"the Ray cluster at {info.address}"
    if cpus > info.cpus + 1e-9:
        raise ConfigError(
            f"backend.workers={count} × cpus_per_worker={section.cpus_per_worker:g} needs {cpus:g} CPUs, "
            f"but {where} has {info.cpus:g}",
            hint="lower backend.workers or backend.cpus_per_worker, or add nodes (`ray start --address ...`)",
        )
    if gpus > info.gpus + 1e-9:
        raise ConfigError(
            f"backend.workers={count} × gpus_per_worker={section.gpus_per_worker:g} needs {gpus:g} GPUs, "
            f"but {where} has {info.gpus:g}",
            hint="set backend.gpus_per_worker=0 to train on CPUs, or join a cluster with GPUs",
        )


def setup_worker() -> None:
    """Ray's ``worker_process_setup_hook``: the same quiet logging in every worker process as here."""
    if os.environ.get("MINIML_DEBUG"):
        return
    for name in ("ray.data", "ray.train"):
        logger = logging.getLogger(name)
        logger.setLevel(logging.ERROR)
        for handler in logger.handlers:
            if not isinstance(handler, logging.FileHandler):
                handler.setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=r"ray\.")


def _init_args(section: BackendConfig, address: str | None) -> dict[str, Any]:
    runtime_env: dict[str, Any] = {"env_vars": worker_env(), "worker_process_setup_hook": setup_worker}
    args: dict[str, Any] = {
        "namespace": "miniml",
        "logging_level": logging.DEBUG if os.environ.get("MINIML_DEBUG") else logging.ERROR,
        "log_to_driver": True,
        "configure_logging": True,
    }
    if address is None:  # a local cluster sized by the section (+1 CPU for reading and writing data)
        args |= {
            "address": "local",
            "num_cpus": max(int(section.workers * section.cpus_per_worker + 0.999) + 1, 2),
            "num_gpus": int(section.workers * section.gpus_per_worker + 0.999),
            "include_dashboard": True,  # Ray Train watches its controller through the state API
        }
    else:
        args["address"] = address
        runtime_env["py_modules"] = [str(PACKAGE)]  # the driver's code, everywhere
        runtime_env = without_job_env(runtime_env, job_runtime_env())
    args["runtime_env"] = runtime_env
    return args


def job_runtime_env() -> dict[str, Any]:
    """Inside a Ray Job (``miniml job submit``): the runtime_env it was submitted with, else ``{}``."""
    raw = os.environ.get(JOB_CONFIG_VAR)
    if not raw:
        return {}
    try:
        env = json.loads(raw).get("runtime_env") or {}
    except (ValueError, AttributeError):
        return {}
    return env if isinstance(env, dict) else {}


def without_job_env(runtime_env: dict[str, Any], job: dict[str, Any]) -> dict[str, Any]:
    """What ``ray.init`` may add to a job's runtime_env: Ray refuses a field or variable both set, and
    the job already carries the code and the settings (the same values: they came from its submitter)."""
    kept = {k: v for k, v in runtime_env.items() if k == "env_vars" or k not in job}
    job_vars = job.get("env_vars") or {}
    kept["env_vars"] = {k: v for k, v in runtime_env.get("env_vars", {}).items() if k not in job_vars}
    return kept


@contextlib.contextmanager
def ray_cluster(section: BackendConfig, *, workers: int | None = None) -> Iterator[ClusterInfo]:
    """Connect (or start) for the ``with`` block; disconnect (and stop what was started) however it ends."""
    ray = import_ray()
    if ray.is_initialized():  # already connected (a caller's session, or a Ray Job's driver): keep it
        info = _describe(ray, os.environ.get("RAY_ADDRESS", "current"), started=False)
        check_resources(info, section, workers)
        yield info
        return
    address = choose_address(section)
    quiet_ray()
    try:
        ray.init(**_init_args(section, address))
    except ConnectionError as err:
        raise ConfigError(
            f"cannot connect to the Ray cluster at {address}: {_first_line(err)}",
            hint="check backend.address and that the cluster runs the same Ray version",
        ) from None
    try:
        info = _describe(ray, address or "local", started=address is None)
        log.info("running on %s", info.describe())
        check_resources(info, section, workers)
        yield info
    finally:
        ray.shutdown()


def _describe(ray: ModuleType, address: str, *, started: bool) -> ClusterInfo:
    total = ray.cluster_resources()
    nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
    return ClusterInfo(address, started, float(total.get("CPU", 0)), float(total.get("GPU", 0)), nodes)


def quiet_ray() -> None:
    """Keep a command's terminal output to miniml's own lines (``MINIML_DEBUG=1`` shows Ray's as well).

    Failures still reach the user: :mod:`.failures` turns them into the command's ``error:`` line, and Ray
    keeps its full logs under the session folder (``/tmp/ray/session_latest/logs``).
    """
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS", "0")
    from ray.data import DataContext

    context = DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    if os.environ.get("MINIML_DEBUG"):
        return
    for name in ("ray", "ray.data", "ray.train"):
        logger = logging.getLogger(name)
        logger.setLevel(logging.ERROR)
        for handler in logger.handlers:
            if not isinstance(handler, logging.FileHandler):
                handler.setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=r"ray\.")


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__
