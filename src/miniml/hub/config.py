"""``hub.yaml``: where the team hub keeps runs and models, and where it listens.

One settings file (environment form ``MINIML_HUB__PORT=5001``, or ``--set port=5001``) gives the MLflow
server its backend store (PostgreSQL) and its artifact destination (an S3 bucket). Credentials are not
settings: the database password comes from ``PGPASSWORD`` or ``~/.pgpass``, S3 keys from the AWS
environment or profile, so the file can be committed and shared.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

from pydantic import Field, field_validator

from miniml.config import StepConfig, load_config

_DATABASES = ("postgresql", "mysql", "mssql", "sqlite")
_ARTIFACT_SCHEMES = ("s3://", "gs://", "wasbs://", "file://", "/")


class HubConfig(StepConfig):
    """What ``miniml hub up --config hub.yaml`` reads."""

    env_section: ClassVar[str] = "hub"

    backend_store_uri: str = Field(
        description="runs and the model registry: a database URI, e.g. postgresql://miniml@db:5432/mlflow"
    )
    artifacts_destination: str = Field(
        description="where the server keeps the artifacts it proxies: s3://BUCKET/PREFIX (or a folder)"
    )
    s3_endpoint_url: str | None = Field(
        None, description="S3-compatible endpoint for the server [default: MLFLOW_S3_ENDPOINT_URL / AWS]"
    )
    host: str = Field("127.0.0.1", description="interface to bind; 0.0.0.0 to serve the team")
    port: int = Field(5000, ge=1, le=65535)
    workers: int = Field(2, ge=1, le=64, description="server worker processes")
    allowed_hosts: str | None = Field(
        None, description="Host headers the server accepts beyond localhost and private IPs (comma-separated)"
    )
    public_url: str | None = Field(
        None, description="the tracking URI members export [default: http://HOST:PORT]"
    )
    start_timeout_s: float = Field(90.0, gt=0, le=600, description="how long to wait for the server")

    @field_validator("backend_store_uri")
    @classmethod
    def _database(cls, value: str) -> str:
        scheme = value.split("://", 1)[0].split("+", 1)[0]
        if "://" not in value or scheme not in _DATABASES:
            raise ValueError(
                "must be a database URI such as postgresql://USER@HOST:5432/DB (password in PGPASSWORD)"
            )
        return value

    @field_validator("artifacts_destination")
    @classmethod
    def _artifacts(cls, value: str) -> str:
        if not value.startswith(_ARTIFACT_SCHEMES):
            raise ValueError("must be s3://BUCKET/PREFIX (or gs://, wasbs://, file:// or an absolute folder)")
        return value.rstrip("/")

    @property
    def url(self) -> str:
        """The tracking URI members export."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in {"0.0.0.0", "::", ""} else self.host
        return f"http://{host}:{self.port}"


def load_hub_config(path: Path | None, overrides: Sequence[str] = ()) -> HubConfig:
    """Load ``hub.yaml`` (optional when the environment sets the keys) with the usual precedence."""
    return load_config(HubConfig, path, overrides)
