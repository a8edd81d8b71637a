"""A real multi-node Ray cluster on loopback for one test module, with the dashboard (the Jobs API).

``ray.cluster_utils.Cluster`` starts each node's processes (GCS, raylet, dashboard) from this process and
stops them at the end; every port is a free one and ``RAY_TMPDIR`` is the cluster's own folder, so the
cluster neither collides with another Ray on the machine nor is joined by one (``address: auto`` reads
``$RAY_TMPDIR/ray/ray_current_cluster``).
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


IDLE_WORKERS = {"idle_worker_killing_time_threshold_ms": 60000, "num_workers_soft_limit": 12}


@dataclass(frozen=True)
class LocalCluster:
    gcs_address: str  # HOST:PORT, what backend.address takes
    jobs_api: str  # http://127.0.0.1:PORT, what `miniml job --address` takes
    temp_dir: Path


def _node_ports() -> dict[str, int]:
    return {
        "dashboard_agent_listen_port": free_port(),
        "metrics_export_port": free_port(),
        "runtime_env_agent_port": free_port(),
    }


@contextlib.contextmanager
def local_cluster(cpus: tuple[int, ...] = (2, 1), *, dashboard: bool = True) -> Iterator[LocalCluster]:
    """Nodes with ``cpus`` logical CPUs each (the first is the head). Jobs run with this Python first on
    ``PATH`` (a cluster's ``python`` is the one with miniml installed)."""
    from ray.cluster_utils import Cluster

    temp = Path(tempfile.mkdtemp(prefix="mr-", dir="/tmp"))  # short: Ray's socket paths have a length cap
    (temp / "ray").mkdir()
    saved = {k: os.environ.get(k) for k in ("RAY_TMPDIR", "PATH", "RAY_USAGE_STATS_ENABLED")}
    os.environ["RAY_TMPDIR"] = str(temp)
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    dashboard_port = free_port()
    head = {
        "num_cpus": cpus[0],
        "gcs_server_port": free_port(),
        "include_dashboard": dashboard,
        "dashboard_host": "127.0.0.1",
        "dashboard_port": dashboard_port,
        "temp_dir": str(temp / "ray"),
        "object_store_memory": 100 * 1024 * 1024,
        # keep idle workers for a minute (Ray's default kills those past one per CPU after 1 s): a job's
        # Ray Data tasks and Train actors then start fewer Python processes (29 -> 22 for the job test)
        "_system_config": IDLE_WORKERS,
        **_node_ports(),
    }
    cluster = Cluster(initialize_head=True, head_node_args=head)
    try:
        for count in cpus[1:]:
            cluster.add_node(num_cpus=count, object_store_memory=100 * 1024 * 1024, **_node_ports())
        cluster.wait_for_nodes()
        yield LocalCluster(cluster.address, f"http://127.0.0.1:{dashboard_port}", temp)
    finally:
        cluster.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
