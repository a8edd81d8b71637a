"""``MINIML_HOME/pipelines/NAME/state.json``: what each step of the last runs produced, written atomically.

A step is recorded ``running`` before it starts and ``done`` (with its outputs) or ``failed`` after, so a
re-run knows which steps it can skip: a ``done`` step whose key (a fingerprint of its config and inputs) is
unchanged. An interrupted step stays ``running``; ``--resume`` continues an interrupted train step from its
last checkpoint.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

import miniml.paths as paths
from miniml.errors import ConfigError
from miniml.io import atomic_write_json

STATE_FILE = "state.json"
Status = Literal["running", "done", "failed", "interrupted"]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class StepRecord(BaseModel):
    """One step's last outcome."""

    status: Status
    key: str | None = None
    started_at: str = Field(default_factory=_now)
    finished_at: str | None = None
    outputs: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None


class PipelineState(BaseModel):
    """Every step's last outcome for one pipeline name."""

    name: str
    pipeline_file: str = ""
    updated_at: str = Field(default_factory=_now)
    steps: dict[str, StepRecord] = Field(default_factory=dict)


def pipeline_dir(name: str) -> Path:
    """The pipeline's own folder: ``MINIML_HOME/pipelines/NAME``."""
    return paths.home() / "pipelines" / name


class StateStore:
    """Reads and atomically rewrites one pipeline's state file."""

    def __init__(self, name: str, pipeline_file: str, *, fresh: bool = False) -> None:
        self.file = pipeline_dir(name) / STATE_FILE
        self.state = PipelineState(name=name, pipeline_file=pipeline_file)
        if not fresh and self.file.is_file():
            try:
                self.state = PipelineState.model_validate_json(self.file.read_text(encoding="utf-8"))
            except ValueError:
                raise ConfigError(
                    f"pipeline state {self.file} is corrupted", hint="run again with --fresh"
                ) from None
            self.state.pipeline_file = pipeline_file

    def get(self, step: str) -> StepRecord | None:
        return self.state.steps.get(step)

    def done(self, step: str, key: str | None) -> StepRecord | None:
        """The step's record if it finished with this ``key`` (so it can be skipped), else None."""
        record = self.get(step)
        return record if record is not None and record.status == "done" and record.key == key else None

    def start(self, step: str, key: str | None) -> None:
        self._put(step, StepRecord(status="running", key=key))

    def finish(self, step: str, outputs: dict[str, Any]) -> None:
        record = self.state.steps[step]
        self._put(
            step, record.model_copy(update={"status": "done", "finished_at": _now(), "outputs": outputs})
        )

    def fail(self, step: str, error: BaseException) -> None:
        record = self.state.steps[step]
        status: Status = "interrupted" if isinstance(error, KeyboardInterrupt) else "failed"
        message = str(error) or type(error).__name__
        self._put(step, record.model_copy(update={"status": status, "finished_at": _now(), "error": message}))

    def _put(self, step: str, record: StepRecord) -> None:
        self.state.steps[step] = record
        self.state.updated_at = _now()
        atomic_write_json(self.file, self.state.model_dump(mode="json"))
