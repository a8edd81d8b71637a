"""Where work runs: the ``backend:`` section shared by ``data prepare``, ``train``, ``predict`` and
``pipeline run``.

``type: local`` (the default) runs everything in this process; ``type: ray`` runs the same task code on a Ray
cluster (:mod:`miniml.backends.ray`). The section is plain data, here in the bottom layer, so every step's
config can hold it; nothing in this module imports Ray.

``address`` says which cluster: ``auto`` joins the cluster ``ray start --head`` started on this machine (or
``$RAY_ADDRESS``), else starts a local one sized by ``workers`` and stops it when the command ends;
``HOST:PORT`` is a cluster's GCS address and ``ray://HOST:10001`` goes through Ray Client. Submitting a
whole command to a cluster as a Ray Job is ``miniml job submit`` (:mod:`miniml.backends.ray.jobs`).
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

_ADDRESS = re.compile(r"^(auto|local|ray://[^\s/]+(:\d+)?/?|[A-Za-z0-9_.\-\[\]:]+:\d+)$")


class BackendConfig(BaseModel):
    """The ``backend:`` section (``--backend ray`` sets ``type``; ``--set backend.workers=2`` any key)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["local", "ray"] = Field("local", description="local: this process; ray: a Ray cluster")
    address: str = Field(
        "auto",
        description="auto | local | HOST:PORT (the head's GCS) | ray://HOST:10001 (Ray Client)",
    )
    workers: int = Field(2, ge=1, le=4096, description="training workers / prediction actors / read tasks")
    cpus_per_worker: float = Field(1.0, gt=0, le=1024, description="CPUs each worker reserves")
    gpus_per_worker: float = Field(0.0, ge=0, le=64, description="GPUs each worker reserves (NCCL when > 0)")
    placement: Literal["pack", "spread"] = Field(
        "pack", description="pack: fill one node first; spread: one worker per node where possible"
    )
    max_failures: int = Field(
        0, ge=-1, le=100, description="train: how often Ray Train restarts failed workers (from a checkpoint)"
    )
    storage_path: str | None = Field(
        None,
        description="Ray Train checkpoints: a shared folder or s3:// URI (default: the run folder)",
    )

    @field_validator("address")
    @classmethod
    def _known_address(cls, value: str) -> str:
        value = value.strip()
        if not _ADDRESS.match(value):
            raise ValueError(
                "use auto, local, HOST:PORT (the head's GCS address) or ray://HOST:10001 (Ray Client)"
            )
        return value

    @property
    def is_local(self) -> bool:
        return self.type == "local"


def backend_overrides(backend: str | None) -> dict[str, object]:
    """The ``--backend NAME`` flag as the highest config layer (``{"backend": {"type": NAME}}``)."""
    return {"backend": {"type": backend}} if backend else {}
