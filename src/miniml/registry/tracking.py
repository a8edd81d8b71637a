"""Run tracking: one MLflow run per training / evaluation job, driven by explicit run ids.

``RunTracker`` is a context manager around one MLflow run. It logs what the run ran on (git commit,
package versions, hardware) when it starts, flattens nested params to MLflow's ``a.b.c`` keys within
MLflow's length limits, and ends the run as FINISHED, FAILED (exception) or KILLED (Ctrl-C). Passing a
``run_id`` resumes that run, e.g. after a crash, so a resumed training job keeps one run.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from mlflow.entities import Dataset as MlflowDataset
from mlflow.entities import DatasetInput, InputTag, Metric, Param, RunStatus, RunTag
from mlflow.tracking import MlflowClient
from mlflow.utils.validation import (
    MAX_ENTITY_KEY_LENGTH,
    MAX_METRICS_PER_BATCH,
    MAX_PARAM_VAL_LENGTH,
    MAX_PARAMS_TAGS_PER_BATCH,
    MAX_TAG_VAL_LENGTH,
    path_not_unique,
)

from miniml.errors import ConfigError, RegistryError
from miniml.registry.backend import (
    call,
    default_tracking_uri,
    ensure_experiment,
    error_code,
    get_client,
    mlflow_errors,
    redact,
)
from miniml.registry.environment import run_environment

if TYPE_CHECKING:
    from miniml.data.dataset import Dataset

__all__ = ["RunTracker", "default_tracking_uri", "flatten_params"]

_log = logging.getLogger(__name__)
# run id → tracking URI of the trackers running in this process, so that registering a model from a run
# whose tracker was given an explicit tracking_uri finds that run's store without being told again
_LIVE_RUNS: dict[str, str] = {}
_BAD_KEY_CHARS = re.compile(r"[^\w\-. /:]")  # MLflow accepts letters, digits, _ - . space / :


def clean_key(key: str) -> str:
    """``key`` as MLflow accepts it: allowed characters only, not path-like (``a/../b``), within length."""
    key = _BAD_KEY_CHARS.sub("_", key)[:MAX_ENTITY_KEY_LENGTH] or "_"
    if path_not_unique(key):
        key = key.replace("/", "_")
    return f"_{key}"[:MAX_ENTITY_KEY_LENGTH] if path_not_unique(key) else key


def clip(value: str, limit: int) -> str:
    """``value`` cut to ``limit`` characters, marking the cut so nobody mistakes it for the whole."""
    return value if len(value) <= limit else value[: limit - 3] + "..."


def flatten_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested mappings (and pydantic models) → ``{"a.b.c": "value"}`` with string values MLflow accepts."""
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if hasattr(value, "model_dump"):  # pydantic model, e.g. a step config
            value = value.model_dump(mode="json")
        if isinstance(value, Mapping) and value:
            flat.update(flatten_params(value, name))
        else:
            flat[clean_key(name)] = clip(_to_text(value), MAX_PARAM_VAL_LENGTH)
    return flat


def _to_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list | tuple | Mapping):
        return json.dumps(value, default=str, ensure_ascii=False, separators=(",", ":"))
    return str(value)


def tracking_uri_of(run_id: str) -> str | None:
    """The tracking URI of a RunTracker running ``run_id`` in this process, if any."""
    return _LIVE_RUNS.get(run_id)


def end_status(exc: BaseException | None) -> str:
    """FINISHED for success (or a clean exit), KILLED for Ctrl-C, FAILED for any other exception."""
    if exc is None or (isinstance(exc, SystemExit) and exc.code in (0, None)):
        return "FINISHED"
    return "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED"


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class RunTracker:
    """One MLflow run as a context manager: start (or resume), log, end with the right status."""

    def __init__(
        self,
        experiment: str,
        *,
        run_name: str | None = None,
        run_id: str | None = None,
        tracking_uri: str | None = None,
    ) -> None:
        self.experiment = experiment
        self.run_name = run_name
        self.tracking_uri = tracking_uri or default_tracking_uri()
        self._run_id = run_id
        self._resume = run_id is not None
        self._started = False

    @property
    def run_id(self) -> str:
        if self._run_id is None:
            raise RegistryError("the run has not started", hint="use `with RunTracker(...) as run:`")
        return self._run_id

    @property
    def client(self) -> MlflowClient:
        return get_client(self.tracking_uri)

    @property
    def artifact_uri(self) -> str:
        """Root of this run's artifacts (e.g. ``file:///.../artifacts/EXPERIMENT/RUN_ID/artifacts``)."""
        run = call(f"cannot read MLflow run {self.run_id}", self.client.get_run, self.run_id)
        return str(run.info.artifact_uri)

    def __enter__(self) -> RunTracker:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        status = end_status(exc)
        if exc is None:
            self.end(status)
            return
        try:
            self.end(status)
        except RegistryError as err:  # the job's own failure is what the user needs to see
            _log.warning("could not mark MLflow run %s %s: %s", self._run_id, status, err)

    def start(self) -> RunTracker:
        """Create the run (or resume ``run_id``) and log the environment it runs in."""
        if self._resume:
            self._reopen()
        else:
            experiment_id = ensure_experiment(self.client, self.experiment, self.tracking_uri)
            with mlflow_errors(f"cannot start an MLflow run in {redact(self.tracking_uri)}"):
                run = self.client.create_run(experiment_id, run_name=self.run_name)
            self._run_id = run.info.run_id
        self._started = True
        _LIVE_RUNS[self.run_id] = self.tracking_uri
        self.set_tags(run_environment())
        return self

    def _reopen(self) -> None:
        from mlflow.exceptions import MlflowException

        try:
            run = self.client.get_run(self.run_id)
        except MlflowException as err:
            if error_code(err) in {"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"}:
                raise RegistryError(
                    f"no MLflow run {self.run_id} in {redact(self.tracking_uri)}",
                    hint="pass a run id shown by the MLflow UI, or start a new run",
                ) from None
            raise RegistryError(f"cannot read MLflow run {self.run_id}: {err.message}") from None
        resumes = int(run.data.tags.get("miniml.resumes", "0")) + 1
        with mlflow_errors(f"cannot resume MLflow run {self.run_id}"):
            self.client.update_run(self.run_id, status="RUNNING")
        self.set_tags({"miniml.resumes": str(resumes)})

    def end(self, status: str = "FINISHED") -> None:
        """Mark the run FINISHED, FAILED or KILLED (idempotent)."""
        if not self._started:
            return
        self._started = False
        _LIVE_RUNS.pop(self.run_id, None)
        call(
            f"cannot end MLflow run {self.run_id}",
            self.client.set_terminated,
            self.run_id,
            status=RunStatus.to_string(RunStatus.from_string(status)),
        )

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log (nested) params; on a resumed run, a param whose value changed is a ConfigError."""
        flat = flatten_params(params)
        existing = call("cannot read run params", self.client.get_run, self.run_id).data.params
        changed = {k: (existing[k], v) for k, v in flat.items() if k in existing and existing[k] != v}
        if changed:
            key, (old, new) = next(iter(changed.items()))
            raise ConfigError(
                f"run {self.run_id} already has param {key}={old!r}, not {new!r}",
                hint="resume with the same config, or start a new run",
            )
        todo = [Param(k, v) for k, v in flat.items() if k not in existing]
        for batch in _chunks(todo, MAX_PARAMS_TAGS_PER_BATCH):
            call("cannot log params", self.client.log_batch, self.run_id, params=batch)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Log metric values at ``step`` (default 0), timestamped now."""
        now = int(time.time() * 1000)
        items = [Metric(clean_key(k), float(v), now, int(step or 0)) for k, v in metrics.items()]
        for batch in _chunks(items, MAX_METRICS_PER_BATCH):
            call("cannot log metrics", self.client.log_batch, self.run_id, metrics=batch)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        items = [RunTag(clean_key(k), clip(str(v), MAX_TAG_VAL_LENGTH)) for k, v in tags.items()]
        for batch in _chunks(items, MAX_PARAMS_TAGS_PER_BATCH):
            call("cannot set run tags", self.client.log_batch, self.run_id, tags=batch)

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        """Upload a file into ``artifact_path``, or a folder's contents into ``artifact_path`` or its name."""
        path = Path(path)
        if path.is_dir():
            call(
                f"cannot upload {path}",
                self.client.log_artifacts,
                self.run_id,
                str(path),
                artifact_path or path.name,
            )
        elif path.is_file():
            call(f"cannot upload {path}", self.client.log_artifact, self.run_id, str(path), artifact_path)
        else:
            raise RegistryError(f"cannot log artifact {path}: no such file or folder")

    def log_dataset(self, dataset: Dataset, context: str = "training") -> None:
        """Record a prepared dataset as a run input: name, digest = fingerprint, source = its folder,
        or the dataset hub URI (``s3://...``) it was pulled from (MLflow's ``s3`` source type)."""
        manifest = dataset.manifest
        remote = dataset.source_uri
        entity = MlflowDataset(
            name=dataset.name,
            digest=dataset.fingerprint[:36],
            source_type="s3" if remote else "local",
            source=json.dumps({"uri": remote or str(Path(dataset.path).resolve())}),
            schema=json.dumps({"columns": manifest.columns}),
            profile=json.dumps({"counts": manifest.counts}),
        )
        tags = [InputTag("mlflow.data.context", context)]
        call("cannot log dataset", self.client.log_inputs, self.run_id, [DatasetInput(entity, tags)])
        extra = {"dataset.uri": remote} if remote else {}
        self.set_tags({"dataset.name": dataset.name, "dataset.fingerprint": dataset.fingerprint, **extra})

    def log_artifacts(self, paths: Iterable[Path], artifact_path: str | None = None) -> None:
        for path in paths:
            self.log_artifact(path, artifact_path)
