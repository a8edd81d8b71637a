"""The model registry: register model folders as MLflow model versions, fetch versions as local folders.

A version's source is the model folder uploaded as run artifacts (``model/``); its tags carry what
``miniml.json`` says (task, dataset fingerprint, metrics, base model, lineage, and the whole file as
``miniml.info``) so listing and alias polling never download weights. Resolving a registry URI downloads
the version once into ``MINIML_HOME/models/NAME/VERSION/`` (temp folder + rename) and reuses it.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlflow.entities.model_registry import ModelVersion as MlflowModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

import miniml.paths as paths
from miniml.errors import RegistryError
from miniml.io import atomic_dir, atomic_write_json
from miniml.modelfolder import INFO_FILE, ModelInfo, read_info
from miniml.registry.backend import call, default_tracking_uri, error_code, get_client, mlflow_errors
from miniml.registry.tracking import RunTracker, clean_key, tracking_uri_of
from miniml.registry.uris import ModelSource, check_alias, check_name, parse_model_uri, parse_version

INFO_TAG = "miniml.info"
SOURCE_MARKER = ".miniml-source.json"
MODEL_ARTIFACT = "model"
_MAX_TAG = 100_000  # MLflow's limit for model registry tag values


@dataclass(frozen=True)
class ModelVersion:
    """One registered, immutable model version."""

    name: str
    version: int
    aliases: tuple[str, ...]
    run_id: str | None
    source: str
    info: ModelInfo | None
    created_at: datetime
    tags: Mapping[str, str] = field(default_factory=dict, compare=False)

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


@dataclass(frozen=True)
class RegisteredModelSummary:
    """A registered model at a glance: latest version, aliases, and the latest version's task + metrics."""

    name: str
    latest_version: int | None
    aliases: Mapping[str, int]
    task: str | None
    metrics: Mapping[str, float]
    updated_at: datetime | None
    tags: Mapping[str, str] = field(default_factory=dict, compare=False)


def models_cache_dir() -> Path:
    """Local copies of registry versions: ``MINIML_HOME/models/NAME/VERSION/``."""
    return paths.home() / "models"


def _when(ms: int | None) -> datetime:
    return datetime.fromtimestamp((ms or 0) / 1000, tz=UTC)


def _info_from_tags(tags: Mapping[str, str]) -> ModelInfo | None:
    text = tags.get(INFO_TAG)
    if not text:
        return None
    try:
        return ModelInfo.model_validate_json(text)
    except ValueError:
        return None


def to_version(mv: MlflowModelVersion) -> ModelVersion:
    tags = dict(mv.tags or {})
    return ModelVersion(
        name=mv.name,
        version=int(mv.version),
        aliases=tuple(sorted(mv.aliases or ())),
        run_id=mv.run_id or None,
        source=str(mv.source),
        info=_info_from_tags(tags),
        created_at=_when(mv.creation_timestamp),
        tags=tags,
    )


def version_tags(info: ModelInfo, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Registry tags for a model folder's ``miniml.json``: searchable facts plus the file itself."""
    dataset = info.dataset or {}
    tags = {
        "task": info.task,
        "architecture": info.architecture,
        "runtime": info.runtime,
        "base_model": info.base_model or "",
        "dataset.name": str(dataset.get("name", "")),
        "dataset.fingerprint": str(dataset.get("fingerprint", "")),
        "lineage": json.dumps(info.lineage, sort_keys=True, default=str),
    }
    tags.update({clean_key(f"metric.{k}"): repr(float(v)) for k, v in info.metrics.items()})
    text = info.model_dump_json()
    if len(text) <= _MAX_TAG:
        tags[INFO_TAG] = text
    tags.update({clean_key(k): str(v)[:_MAX_TAG] for k, v in (extra or {}).items()})
    return {k: v for k, v in tags.items() if v != ""}


# ---------------------------------------------------------------- register


def register_model(
    name: str,
    folder: Path,
    *,
    run_id: str | None = None,
    tags: dict[str, str] | None = None,
    tracking_uri: str | None = None,
) -> ModelVersion:
    """Register a model folder as the next version of ``name`` (uploading it to the run if needed).

    Without ``run_id`` a short run in experiment ``name`` holds the upload. The store is ``tracking_uri``,
    else the one of the live ``RunTracker`` of ``run_id``, else the default. Nothing is half-registered:
    a failure before the version exists leaves no version (and no new empty registered model).
    """
    check_name(name)
    folder = Path(folder)
    info = read_info(folder)
    check_metrics(info, folder)
    all_tags = version_tags(info, tags)
    uri = tracking_uri or (tracking_uri_of(run_id) if run_id else None) or default_tracking_uri()
    if run_id is not None:
        return _register_in_run(get_client(uri), name, folder, run_id, all_tags)
    with RunTracker(name, run_name=f"register-{name}", tracking_uri=uri) as run:
        run.set_tags({"miniml.registered_as": name})
        return _register_in_run(run.client, name, folder, run.run_id, all_tags)


def check_metrics(info: ModelInfo, folder: Path) -> None:
    """Refuse a model whose recorded test metrics are not finite: its outputs were NaN or infinite."""
    import math

    bad = sorted(k for k, v in info.metrics.items() if not math.isfinite(float(v)))
    if bad:
        raise RegistryError(
            f"model folder {folder} is not registered: its metrics {', '.join(bad)} are not finite "
            "(the model's outputs on the test split were NaN or infinite)",
            hint="the training run diverged: lower the learning rate or check the data, then retrain",
        )


def _register_in_run(
    client: MlflowClient, name: str, folder: Path, run_id: str, tags: dict[str, str]
) -> ModelVersion:
    run = call(f"cannot read MLflow run {run_id}", client.get_run, run_id)
    subpath = upload_model(client, run_id, folder)
    source = f"{str(run.info.artifact_uri).rstrip('/')}/{subpath}"
    return _create_version(client, name, source, run_id, tags)


def upload_model(client: MlflowClient, run_id: str, folder: Path) -> str:
    """Artifact path of ``folder`` in the run (``model``, ``model-2``, ...), uploaded unless already there."""
    local = _local_listing(folder)
    for n in range(1, 100):
        subpath = MODEL_ARTIFACT if n == 1 else f"{MODEL_ARTIFACT}-{n}"
        remote = _remote_listing(client, run_id, subpath)
        if not remote:
            call(f"cannot upload {folder}", client.log_artifacts, run_id, str(folder), subpath)
            return subpath
        if remote == local and _same_info(client, run_id, subpath, folder):
            return subpath
    raise RegistryError(f"run {run_id} already holds 99 model folders", hint="register from a new run")


def _local_listing(folder: Path) -> dict[str, int]:
    return {
        p.relative_to(folder).as_posix(): p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file()
    }


def _remote_listing(client: MlflowClient, run_id: str, path: str) -> dict[str, int]:
    """Relative path → size of every file under artifact ``path`` of the run (empty if none)."""
    out: dict[str, int] = {}
    pending = [path]
    while pending:
        current = pending.pop()
        for item in call("cannot list run artifacts", client.list_artifacts, run_id, current):
            if item.is_dir:
                pending.append(item.path)
            else:
                out[item.path[len(path) + 1 :]] = int(item.file_size or 0)
    return out


def _same_info(client: MlflowClient, run_id: str, subpath: str, folder: Path) -> bool:
    """Whether the uploaded ``miniml.json`` is byte-identical to the local one (sizes alone can match)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        got = call(
            "cannot read run artifacts",
            client.download_artifacts,
            run_id,
            f"{subpath}/{INFO_FILE}",
            tmp,
        )
        return Path(got).read_bytes() == (folder / INFO_FILE).read_bytes()


def _create_version(
    client: MlflowClient, name: str, source: str, run_id: str, tags: dict[str, str]
) -> ModelVersion:
    created_model = False
    try:
        client.create_registered_model(name)
        created_model = True
    except MlflowException as err:
        if error_code(err) != "RESOURCE_ALREADY_EXISTS":
            raise RegistryError(f"cannot create registered model {name!r}: {err.message}") from None
    try:
        mv = client.create_model_version(name, source, run_id=run_id, tags=tags, await_creation_for=0)
    except MlflowException as err:
        if created_model:  # leave no empty registered model behind
            _delete_quietly(client, name)
        raise RegistryError(f"cannot register a version of {name!r}: {err.message}") from None
    return to_version(mv)


def _delete_quietly(client: MlflowClient, name: str) -> None:
    with contextlib.suppress(MlflowException):  # the original failure is what the user needs to see
        client.delete_registered_model(name)


# ---------------------------------------------------------------- look up


def get_version(name: str, ref: str | int) -> ModelVersion:
    """Version ``ref`` of ``name``: a number (``3``/``"3"``), an alias (``"champion"``) or ``"latest"``."""
    check_name(name)
    client = get_client()
    text = str(ref).strip()
    if text.lower() == "latest":
        return latest_version(name)
    try:
        if text.isdigit():
            mv = client.get_model_version(name, str(parse_version(text)))
        else:
            mv = client.get_model_version_by_alias(name, check_alias(text))
    except MlflowException as err:
        raise _not_found(client, name, text, err) from None
    return to_version(mv)


def latest_version(name: str) -> ModelVersion:
    """The highest version number of ``name``."""
    versions = list_versions(name)
    if not versions:
        raise RegistryError(f"model {name!r} has no versions", hint="register one with `miniml train`")
    return versions[-1]


def list_versions(name: str) -> list[ModelVersion]:
    """All versions of ``name``, oldest first; an unknown name is a RegistryError listing known names."""
    client = get_client()
    rm = _require_model(client, check_name(name))
    found: list[MlflowModelVersion] = []
    token: str | None = None
    while True:
        with mlflow_errors(f"cannot list versions of {name!r}"):
            page = client.search_model_versions(f"name='{name}'", page_token=token)
        found.extend(page)
        token = getattr(page, "token", None)
        if not token:
            break
    # search results leave aliases empty; the registered model knows them
    by_version: dict[int, list[str]] = {}
    for alias, number in (rm.aliases or {}).items():
        by_version.setdefault(int(number), []).append(alias)
    versions = [to_version(mv) for mv in found]
    versions = [replace(v, aliases=tuple(sorted(by_version.get(v.version, ())))) for v in versions]
    return sorted(versions, key=lambda v: v.version)


def list_models() -> list[RegisteredModelSummary]:
    """Every registered model, by name."""
    client = get_client()
    out: list[RegisteredModelSummary] = []
    token: str | None = None
    while True:
        with mlflow_errors("cannot list registered models"):
            page = client.search_registered_models(page_token=token)
        out.extend(_summary(rm) for rm in page)
        token = getattr(page, "token", None)
        if not token:
            break
    return sorted(out, key=lambda s: s.name)


def _summary(rm: Any) -> RegisteredModelSummary:
    latest = max(rm.latest_versions or [], key=lambda mv: int(mv.version), default=None)
    tags = dict(latest.tags or {}) if latest is not None else {}
    metrics = {}
    for key, value in tags.items():
        if key.startswith("metric."):
            try:
                metrics[key[len("metric.") :]] = float(value)
            except ValueError:
                continue
    return RegisteredModelSummary(
        name=rm.name,
        latest_version=int(latest.version) if latest is not None else None,
        aliases={alias: int(v) for alias, v in (rm.aliases or {}).items()},
        task=tags.get("task"),
        metrics=metrics,
        updated_at=_when(rm.last_updated_timestamp) if rm.last_updated_timestamp else None,
        tags=dict(rm.tags or {}),
    )


def _require_model(client: MlflowClient, name: str) -> Any:
    try:
        return client.get_registered_model(name)
    except MlflowException as err:
        if error_code(err) in {"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"}:
            raise RegistryError(f"no registered model {name!r}", hint=_known_models(client)) from None
        raise RegistryError(f"cannot read registered model {name!r}: {err.message}") from None


def _known_models(client: MlflowClient) -> str:
    names = sorted(rm.name for rm in client.search_registered_models(max_results=50))
    if not names:
        return "the registry is empty; `miniml train CONFIG.yaml` registers a model"
    return "registered models: " + ", ".join(names)


def _not_found(client: MlflowClient, name: str, ref: str, err: MlflowException) -> RegistryError:
    """The one-line error for an unknown name, version or alias, listing what does exist."""
    rm = _require_model(client, name)
    if ref.isdigit():
        versions = sorted(int(v.version) for v in client.search_model_versions(f"name='{name}'"))
        known = ", ".join(map(str, versions)) or "none"
        if int(ref) not in versions:
            return RegistryError(f"model {name!r} has no version {ref}", hint=f"versions: {known}")
    else:
        aliases = dict(rm.aliases or {})
        if ref not in aliases:
            known = ", ".join(f"{a}→{v}" for a, v in sorted(aliases.items())) or "none"
            return RegistryError(f"model {name!r} has no alias {ref!r}", hint=f"aliases: {known}")
    return RegistryError(f"cannot read version {ref} of {name!r}: {err.message}")


# ---------------------------------------------------------------- aliases


def set_alias(name: str, version: int, alias: str) -> ModelVersion:
    """Point ``alias`` at ``version`` of ``name`` (moving it if it pointed elsewhere)."""
    mv = get_version(name, parse_version(version))
    client = get_client()
    call(
        f"cannot set alias {alias!r} on {name!r}",
        client.set_registered_model_alias,
        name,
        check_alias(alias),
        str(mv.version),
    )
    return get_version(name, mv.version)


def delete_alias(name: str, alias: str) -> None:
    """Remove ``alias`` from ``name``; an unknown alias is a RegistryError listing the existing ones."""
    get_version(name, check_alias(alias))
    call(f"cannot delete alias {alias!r}", get_client().delete_registered_model_alias, name, alias)


# ---------------------------------------------------------------- resolve


def local_copy(uri: str) -> ModelSource:
    """The local folder of ``models:/NAME@ALIAS``, ``models:/NAME/VERSION`` or ``models:/NAME`` (latest).

    The registry half of :func:`miniml.runtime.resolve`, which is what callers use (it takes folders too).
    """
    ref = parse_model_uri(str(uri))
    if ref.alias:
        mv = get_version(ref.name, ref.alias)
    elif ref.version is not None:
        mv = get_version(ref.name, ref.version)
    else:
        mv = latest_version(ref.name)
    return ModelSource(str(uri), download_version(mv), mv.name, mv.version, ref.alias)


def download_version(mv: ModelVersion) -> Path:
    """The local copy of ``mv`` under the models cache, downloaded (atomically) on first use."""
    final = models_cache_dir() / mv.name / str(mv.version)
    marker = {"name": mv.name, "version": mv.version, "source": mv.source, "run_id": mv.run_id}
    if _cached(final, marker):
        return final
    with _progress(f"downloading {mv.uri}"), atomic_dir(final, replace=final.exists()) as tmp:
        staging = tmp / ".download"
        with mlflow_errors(f"cannot download {mv.uri} from {mv.source}"):
            import mlflow.artifacts

            got = Path(
                mlflow.artifacts.download_artifacts(
                    artifact_uri=mv.source, dst_path=str(staging), tracking_uri=default_tracking_uri()
                )
            )
        for child in got.iterdir():
            child.rename(tmp / child.name)
        shutil.rmtree(staging)
        if not (tmp / INFO_FILE).is_file():
            raise RegistryError(f"{mv.uri} is not a miniml model (no {INFO_FILE} in {mv.source})")
        atomic_write_json(tmp / SOURCE_MARKER, marker)
    return final


def _cached(folder: Path, marker: dict[str, Any]) -> bool:
    """Whether ``folder`` is a complete copy of the same source (a different store may reuse NAME/VERSION)."""
    try:
        seen = json.loads((folder / SOURCE_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return bool(seen == marker and (folder / INFO_FILE).is_file())


def _progress(message: str) -> Any:
    """A spinner on stderr for a terminal, nothing otherwise (logs and pipes stay clean)."""
    from contextlib import nullcontext

    if not sys.stderr.isatty():
        return nullcontext()
    from rich.console import Console

    return Console(stderr=True).status(message)
