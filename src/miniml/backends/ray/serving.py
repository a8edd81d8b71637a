"""``miniml serve --backend ray``: the miniml server as a Ray Serve application on a Ray cluster.

One deployment (``MinimlServer``) whose replicas each run the local server's FastAPI app
(:mod:`.replica`, ``@serve.ingress()``), behind Ray Serve's HTTP proxy on ``server.host:server.port``. So the
routes, OpenAPI, error shapes, API keys, per-key limits, size limits, cache, alias following and metrics
are the local server's code, not a copy; state that must be shared between replicas is shared through Redis
(``ratelimit.storage: redis://...``, ``cache.backend: redis``, ``auth.keys_redis``).

**Batching**: each replica runs miniml's own :class:`~miniml.serve.batching.Batcher` (through the app's
engine), not ``@serve.batch``. The ingress replica is where requests arrive, so batching there costs no
extra hop; a separate model deployment batched with ``@serve.batch`` would add a second Ray call per request
(proxy → ingress → model) and a second queue, and its batches would only ever hold what one ingress replica
forwarded. Measured by ``bench/serve_ray.py`` (README, "Serving on Ray and Kubernetes"). Ray's default
``max_ongoing_requests`` of 5 would cap a replica's batch at 5 requests: ``backend.max_ongoing_requests``.

**Cluster**: ``backend.address`` as for training (:mod:`.cluster`): ``auto`` joins a running cluster, else
starts a local one sized by this machine and stops it with the command; the command runs until Ctrl-C /
SIGTERM and then deletes its application, or returns at once with ``--detach`` (a joined cluster only).
The replicas reserve ``cpus_per_replica`` / ``gpus_per_replica``; more than the cluster holds is one error
line before anything is deployed (Ray would wait for them forever).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any

from miniml.backends.ray.cluster import (
    PACKAGE,
    ClusterInfo,
    choose_address,
    import_ray,
    quiet_ray,
    setup_worker,
    worker_env,
)
from miniml.backends.ray.failures import WorkerFailed, explain, first_line
from miniml.compute import BackendConfig
from miniml.errors import ConfigError, MinimlError
from miniml.serve.settings import ServeSettings

log = logging.getLogger("miniml.serve")
DEPLOYMENT = "MinimlServer"
HEALTH_CHECK_PERIOD_S = 2.0
CONSTRUCTOR_RETRIES = 3
LOCAL_OBJECT_STORE_BYTES = 256 * 1024 * 1024  # requests travel inline; the store holds little


class ServingFailed(MinimlError):
    """The Serve application could not be deployed or stopped."""

    exit_code = 1


@dataclass(frozen=True)
class Deployed:
    """What ``deploy`` put on the cluster."""

    url: str
    app_name: str
    replicas: str  # "2" or "auto (1..4)"
    cluster: ClusterInfo


def _section(settings: ServeSettings) -> BackendConfig:
    """The cluster part of ``backend:`` as the training backend's section (for :mod:`.cluster`)."""
    return BackendConfig.model_validate({"type": "ray", "address": settings.backend.address})


def deployment_options(settings: ServeSettings) -> dict[str, Any]:
    """``serve.deployment`` options from the ``backend:`` section."""
    b = settings.backend
    actor: dict[str, Any] = {"num_cpus": b.cpus_per_replica, "num_gpus": b.gpus_per_replica}
    options: dict[str, Any] = {
        "name": DEPLOYMENT,
        "ray_actor_options": actor,
        "max_ongoing_requests": b.max_ongoing_requests,
        "health_check_period_s": HEALTH_CHECK_PERIOD_S,
        "graceful_shutdown_timeout_s": settings.server.graceful_timeout_s,
        "max_constructor_retry_count": CONSTRUCTOR_RETRIES,
        "logging_config": {"enable_access_log": False, "log_level": "WARNING"},  # miniml logs its own
    }
    if b.replicas == "auto":
        a = b.autoscaling
        options["autoscaling_config"] = {
            "min_replicas": a.min_replicas,
            "initial_replicas": a.min_replicas,
            "max_replicas": a.max_replicas,
            "target_ongoing_requests": a.target_ongoing_requests,
            "upscale_delay_s": a.upscale_delay_s,
            "downscale_delay_s": a.downscale_delay_s,
            "look_back_period_s": a.look_back_period_s,
            "metrics_interval_s": a.metrics_interval_s,
        }
    else:
        options["num_replicas"] = b.replicas
    return options


def describe_replicas(settings: ServeSettings) -> str:
    b = settings.backend
    if b.replicas == "auto":
        return f"auto ({b.autoscaling.min_replicas}..{b.autoscaling.max_replicas})"
    return str(b.replicas)


def check_capacity(info: ClusterInfo, settings: ServeSettings) -> None:
    """Refuse replicas the cluster cannot place (their first count; autoscaling may add nodes later)."""
    b = settings.backend
    count = b.min_replicas
    where = "the local Ray cluster" if info.started else f"the Ray cluster at {info.address}"
    for kind, each, have in (
        ("CPUs", b.cpus_per_replica, info.cpus),
        ("GPUs", b.gpus_per_replica, info.gpus),
    ):
        need = count * each
        if need > have + 1e-9:
            key = "cpus_per_replica" if kind == "CPUs" else "gpus_per_replica"
            raise ConfigError(
                f"{count} replica(s) × backend.{key}={each:g} need {need:g} {kind}, but {where} has {have:g}",
                hint="lower backend.replicas (or autoscaling.min_replicas) or backend."
                f"{key}, or add nodes (`ray start --address ...`)",
            )


def preflight(settings: ServeSettings) -> None:
    """What the local server checks before opening its port, checked here before deploying: models resolve
    to known tasks and a non-loopback host has keys (a replica would otherwise fail on every retry)."""
    from miniml.modelfolder import read_info
    from miniml.runtime.resolve import resolve
    from miniml.serve.auth import KeyStore
    from miniml.tasks.registry import get_task

    if not settings.models:
        raise ConfigError("no model to serve", hint="pass a MODEL_URI or list `models:` in the serve config")
    for uri in settings.models:
        get_task(read_info(resolve(uri).path).task)
    KeyStore.from_settings(settings.auth, host=settings.server.host)


def _init_args(address: str | None, *, ship_code: bool = True) -> dict[str, Any]:
    runtime_env: dict[str, Any] = {"env_vars": worker_env(), "worker_process_setup_hook": setup_worker}
    args: dict[str, Any] = {
        "namespace": "miniml",
        "logging_level": logging.ERROR,
        "log_to_driver": True,
        "configure_logging": True,
    }
    if address is None:  # a local cluster with this machine's CPUs and GPUs
        args |= {
            "address": "local",
            "include_dashboard": False,
            "object_store_memory": LOCAL_OBJECT_STORE_BYTES,
        }
    else:
        args["address"] = address
        runtime_env["py_modules"] = [str(PACKAGE)]  # the driver's code, in every replica
    if ship_code:
        args["runtime_env"] = runtime_env
    return args


@contextlib.contextmanager
def connected(
    settings: ServeSettings, *, ship_code: bool = True, address: str | None = None
) -> Iterator[tuple[ModuleType, ClusterInfo]]:
    """Connect to (or start) the cluster of ``backend.address`` for the ``with`` block (``ship_code``: with
    the runtime environment replicas need; status and stop only talk to Serve's controller)."""
    ray = import_ray()
    address = address or choose_address(_section(settings))
    quiet_ray()
    try:
        ray.init(**_init_args(address, ship_code=ship_code))
    except ConnectionError as err:
        raise ConfigError(
            f"cannot connect to the Ray cluster at {address}: {first_line(err)}",
            hint="check backend.address and that the cluster runs the same Ray version",
        ) from None
    try:
        total = ray.cluster_resources()
        nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
        cpus, gpus = float(total.get("CPU", 0)), float(total.get("GPU", 0))
        yield ray, ClusterInfo(address or "local", address is None, cpus, gpus, nodes)
    finally:
        ray.shutdown()


def application(settings: ServeSettings) -> Any:
    """The bound Serve application: the replica class, wrapped as an ingress deployment, and the board its
    replicas report their status and metrics to (:mod:`.board`)."""
    from ray import serve

    from miniml.backends.ray.board import ReplicaBoard, board_options
    from miniml.backends.ray.replica import MinimlReplica

    ingress = serve.ingress()(MinimlReplica)  # the app is built in each replica (__serve_build_asgi_app__)
    with warnings.catch_warnings():  # Ray 2.60 warns that it will read it from the environment one day
        warnings.filterwarnings("ignore", "The `metrics_interval_s` field", DeprecationWarning)
        deployment = serve.deployment(**deployment_options(settings))(ingress)
    board = serve.deployment(**board_options(settings.server.graceful_timeout_s))(ReplicaBoard)
    return deployment.bind(settings.model_dump_json(), worker_env(), board.bind())


def build_app(args: dict[str, Any]) -> Any:
    """Ray Serve's application builder (``import_path: miniml.backends.ray.serving:build_app``), for a Serve
    config file (``serve deploy``, a KubeRay ``RayService``): the application ``miniml serve --backend ray``
    deploys. ``args``: ``config`` (a serve.yaml path) and ``set`` (a list of ``key=value`` overrides); the
    ``MINIML_SERVE__*`` environment applies as on the command line."""
    from miniml.serve.server import load_settings

    unknown = set(args) - {"config", "set"}
    if unknown:
        raise ConfigError(f"unknown application args {sorted(unknown)}; use config and set")
    config = args.get("config")
    settings = load_settings(
        Path(config) if config else None, overrides=list(args.get("set") or ()), backend="ray"
    )
    return application(settings)


def deploy(settings: ServeSettings, info: ClusterInfo) -> Deployed:
    """Start Serve's proxies on ``server.host:server.port`` and run the application until it is RUNNING."""
    from ray import serve

    check_capacity(info, settings)
    host, port = settings.server.host, settings.server.port
    name = settings.backend.app_name
    try:
        serve.start(
            proxy_location=settings.backend.proxy_location,
            http_options={
                "host": host,
                "port": port,
                "keep_alive_timeout_s": int(settings.server.keep_alive_s),
            },
        )
        check_listener(host, port)
        serve.run(application(settings), name=name, route_prefix="/", blocking=False)
    except MinimlError:
        raise
    except Exception as err:  # RuntimeError("Deploying application ... failed"), a proxy that died ...
        raise _deploy_error(err, name) from None
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    return Deployed(f"http://{shown}:{port}", name, describe_replicas(settings), info)


def check_listener(host: str, port: int) -> None:
    """Serve's HTTP options are fixed while Serve runs on a cluster: refuse another host or port rather than
    deploy where nobody would look for it (pinned Ray's private client; no check when it moved)."""
    try:
        from ray.serve.context import _get_global_client

        client = _get_global_client()
        assert client is not None
        running = client.http_config
        where = (str(running.host), int(running.port))
    except Exception:  # a moved private helper: serve.start has logged its warning
        return
    if where != (host, port):
        raise ConfigError(
            f"Ray Serve on this cluster listens on {where[0]}:{where[1]}, not {host}:{port} "
            "(its HTTP options are fixed while it runs)",
            hint=f"use --host {where[0]} --port {where[1]}, or `serve shutdown` on the cluster first",
        )


def _deploy_error(err: Exception, name: str) -> MinimlError:
    """One line for a failed deploy: a miniml error raised in a replica, else the replica's last line."""
    found = explain(err, f"deploying the Serve application {name!r}")
    if type(found) is not WorkerFailed:
        return found
    cause = _replica_failure(name) or first_line(err)
    return ServingFailed(
        f"the Serve application {name!r} failed to start: {cause}",
        hint="see the replica logs (`ray logs`, or the lines above with MINIML_DEBUG=1)",
    )


def _replica_failure(name: str) -> str | None:
    """The last line of the error a replica died of, from the deployment's status message."""
    from ray import serve

    with contextlib.suppress(Exception):
        for dep in serve.status().applications[name].deployments.values():
            lines = [line.strip() for line in dep.message.splitlines() if line.strip()]
            if len(lines) > 1:
                return lines[-1][:300]
    return None


class Stopped(Exception):
    """SIGINT or SIGTERM arrived (raised in the main thread, wherever it waits)."""


def stop_on_signals() -> None:
    """From now on SIGINT / SIGTERM raise :class:`Stopped` (also during a deploy that is still waiting)."""

    def handler(sig: int, frame: FrameType | None) -> None:
        raise Stopped(signal.Signals(sig).name)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handler)


def wait_for_signal() -> None:
    """Block until SIGINT or SIGTERM (after :func:`stop_on_signals`)."""
    with contextlib.suppress(Stopped):
        while True:
            time.sleep(0.5)


def run_on_ray(settings: ServeSettings, *, detach: bool = False, demo_key: bool = False) -> None:
    """``miniml serve --backend ray``: deploy, print where, then serve until a signal (or return: detach)."""
    from miniml.serve.server import curl_line, with_demo_key

    key = None
    if demo_key:
        settings, key = with_demo_key(settings)
    import_ray()
    address = choose_address(_section(settings))  # an address that does not answer: before loading anything
    if detach and address is None:
        raise ConfigError(
            "--detach needs a running Ray cluster (a local one would stop with this command)",
            hint="start one with `ray start --head` (then backend.address: auto finds it)",
        )
    preflight(settings)
    with connected(settings, address=address) as (_, info):
        if not detach:
            stop_on_signals()  # after ray.init, which installs its own handlers
        try:
            deployed = deploy(settings, info)
        except Stopped:
            _delete(settings.backend.app_name)
            raise ServingFailed("stopped by a signal while deploying") from None
        print(
            f"serving {', '.join(settings.models)} on Ray Serve at {deployed.url} "
            f"({deployed.replicas} replica(s) of {DEPLOYMENT} on {info.describe()})",
            flush=True,
        )
        if key is not None:
            print(f"demo API key (shown once): {key}", flush=True)
            print(
                curl_line(settings, _first_name(settings), key, "Hej, hvordan har du det i dag?"), flush=True
            )
        if detach:
            print(f"detached: `miniml serve stop --set backend.app_name={deployed.app_name}` removes it")
            return
        print("Ctrl-C stops it", flush=True)
        try:
            wait_for_signal()
        finally:
            _delete(deployed.app_name)
        print(f"stopped the Serve application {deployed.app_name!r}", flush=True)


def _delete(name: str) -> None:
    """Delete the application (and its replicas); a second signal meanwhile is ignored."""
    from ray import serve

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    serve.delete(name)


def _first_name(settings: ServeSettings) -> str:
    from miniml.runtime.resolve import resolve

    return resolve(settings.models[0]).name


def serve_status(settings: ServeSettings) -> list[str]:
    """Lines for ``miniml serve status``: each application, its deployments and their replicas."""
    import_ray()
    address = choose_address(_section(settings))
    if address is None:
        raise ConfigError(
            "no running Ray cluster to ask (backend.address auto found none)",
            hint="set backend.address=HOST:PORT or RAY_ADDRESS, or start one with `ray start --head`",
        )
    with connected(settings, ship_code=False, address=address) as (_, info):
        return _status_lines(info)


def _status_lines(info: ClusterInfo) -> list[str]:
    from ray import serve

    status = serve.status()
    lines = [f"cluster: {info.describe()}"]
    if not status.applications:
        return [*lines, "no Serve application is running"]
    replicas = _replica_details()
    for app_name, app in status.applications.items():
        lines.append(
            f"application {app_name}: {_word(app.status)}" + (f" ({app.message})" if app.message else "")
        )
        for dep_name, dep in app.deployments.items():
            counts = ", ".join(f"{n} {_word(state)}" for state, n in sorted(dep.replica_states.items()))
            lines.append(f"  deployment {dep_name}: {_word(dep.status)}, replicas: {counts or 'none'}")
            if dep.message:
                lines.append(f"    {dep.message}")
            for r in replicas.get((app_name, dep_name), []):
                lines.append(f"    replica {r['id']}: {r['state']} on {r['node']} (pid {r['pid']})")
    return lines


def _word(value: object) -> str:
    """An enum's value (``RUNNING``), anything else as text."""
    return str(getattr(value, "value", value))


def _replica_details() -> dict[tuple[str, str], list[dict[str, str]]]:
    """Per-replica rows from the controller (pinned Ray's private client; no rows when it moved)."""
    try:
        from ray.serve.context import _get_global_client
        from ray.serve.schema import ServeInstanceDetails

        client = _get_global_client()
        assert client is not None
        details = ServeInstanceDetails(**client.get_serve_details())
    except Exception:  # a moved private helper: status keeps the public counts
        return {}
    rows: dict[tuple[str, str], list[dict[str, str]]] = {}
    for app_name, app in details.applications.items():
        for dep_name, dep in app.deployments.items():
            rows[(app_name, dep_name)] = [
                {"id": r.replica_id, "state": _word(r.state), "node": str(r.node_ip), "pid": str(r.pid)}
                for r in dep.replicas
            ]
    return rows


def serve_stop(settings: ServeSettings) -> str:
    """``miniml serve stop``: delete the application ``backend.app_name`` from the running cluster."""
    from ray import serve

    import_ray()
    address = choose_address(_section(settings))
    if address is None:
        raise ConfigError("no running Ray cluster to stop an application on", hint="set backend.address")
    name = settings.backend.app_name
    with connected(settings, ship_code=False, address=address):
        if name not in serve.status().applications:
            raise ConfigError(
                f"no Serve application {name!r} runs on the cluster", hint="see `miniml serve status`"
            )
        serve.delete(name)
    return f"stopped the Serve application {name!r}"
