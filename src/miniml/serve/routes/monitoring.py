"""HTTP routes of model monitoring: drift verdicts, feedback, online quality.

- ``GET /v1/models/{name}/drift``: the champion's verdict (``drift_detected``, the window's size and age, and
  per signal its statistic, threshold and ``drift_detected``), and the challenger's under ``challenger``.
- ``POST /v1/models/{name}/feedback``: ``{"request_id", "label"}`` (input ``index``, default 0) or
  ``{"request_id", "labels": [...]}`` (one per input) joins the stored prediction of that request; 404 when
  the request id is unknown or expired, 403 unless the key is the one that made the request or an admin key,
  409 when that input already has feedback.
- ``GET /v1/models/{name}/feedback``: online accuracy / macro-F1 per serving version, shadow agreement.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, model_validator

from miniml.monitor.canary import CHALLENGER, CHAMPION
from miniml.monitor.predictions import PredictionRecord
from miniml.serve.engine import ServedModel
from miniml.serve.errors import HTTPProblem
from miniml.serve.schemas import ERROR_RESPONSES
from miniml.serve.settings import ApiKeyRecord
from miniml.serve.state import ServerState, get_state

router = APIRouter(tags=["monitoring"])
State = Annotated[ServerState, Depends(get_state)]


class FeedbackRequest(BaseModel):
    """The truth about an answered request."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"request_id": "9f3c2a1e-1", "label": "da"}]},
    )

    request_id: str = Field(min_length=1, max_length=128, description="X-Request-ID of the answer")
    label: str | None = Field(
        default=None, min_length=1, max_length=100_000, description="true label (or reference text)"
    )
    index: int = Field(default=0, ge=0, description="which input of the request `label` is about")
    labels: list[str] | None = Field(default=None, min_length=1, description="one per input, in order")

    @model_validator(mode="after")
    def _one_form(self) -> FeedbackRequest:
        if (self.label is None) == (self.labels is None):
            raise ValueError("send either label (with index) or labels (one per input)")
        return self

    def pairs(self, inputs: int) -> list[tuple[int, str]]:
        """(input index, label) pairs, checked against the request's number of inputs."""
        if self.labels is not None:
            if len(self.labels) != inputs:
                raise HTTPProblem(
                    422,
                    "invalid_request",
                    f"labels has {len(self.labels)} entries; the request had {inputs} inputs",
                )
            return list(enumerate(self.labels))
        if self.index >= inputs:
            raise HTTPProblem(
                422, "invalid_request", f"index {self.index} is out of range; the request had {inputs} inputs"
            )
        assert self.label is not None
        return [(self.index, self.label)]


def lookup(state: ServerState, request: Request, name: str) -> tuple[ServedModel, ApiKeyRecord | None]:
    """Auth (401), the served model (404) and the key's access to it (403)."""
    record = state.access.authenticate(request)
    served = state.models.get(name)
    if served is None:
        raise HTTPProblem(
            404, "model_not_found", f"no model named {name!r} is served; GET /v1/models lists them"
        )
    if record is not None and not record.allows(name):
        raise HTTPProblem(403, "forbidden", f"key {record.name!r} may not use model {name!r}")
    return served, record


@router.get("/v1/models/{name}/drift", responses=ERROR_RESPONSES, summary="Drift verdict")
async def drift(name: str, request: Request, state: State) -> dict[str, Any]:
    """The serving versions' drift verdicts against their reference profiles."""
    served, _ = lookup(state, request, name)
    monitoring = state.monitoring
    if not monitoring.drift.enabled:
        raise HTTPProblem(404, "drift_disabled", "drift monitoring is off (monitor.drift.enabled: false)")
    champion = monitoring.monitor(served.current, CHAMPION)
    body = (await asyncio.to_thread(champion.report)).model_dump(mode="json")
    challenger = state.rollouts.challenger_of(name)
    if challenger is not None:
        other = monitoring.monitor(challenger.current, CHALLENGER)
        body["challenger"] = (await asyncio.to_thread(other.report)).model_dump(mode="json")
    return body


@router.post("/v1/models/{name}/feedback", responses=ERROR_RESPONSES, summary="Send feedback")
async def feedback(name: str, body: FeedbackRequest, request: Request, state: State) -> dict[str, Any]:
    """Join the true label of an answered request with what each serving version answered."""
    _, caller = lookup(state, request, name)
    monitoring = state.monitoring
    if monitoring.store is None:
        raise HTTPProblem(404, "feedback_disabled", "feedback is off (monitor.feedback.enabled: false)")
    record = await monitoring.store.get(body.request_id)
    if record is None or record.model != name:
        raise HTTPProblem(
            404,
            "prediction_not_found",
            f"no answer of {name!r} with request id {body.request_id!r} is kept: unknown, or older "
            f"than monitor.feedback.ttl_s ({monitoring.feedback.ttl_s:g} s)",
        )
    if caller is not None and not caller.admin and caller.name != record.key:
        raise HTTPProblem(403, "forbidden", "feedback needs the key that made the request, or an admin key")
    inputs = len(next(iter(record.answers.values())).outputs)
    pairs = body.pairs(inputs)
    again = sorted({i for i, _ in pairs} & set(record.labelled))
    if again:
        raise HTTPProblem(409, "feedback_exists", f"input(s) {again} of this request already have feedback")
    labelled = apply(state, record, pairs)
    return {
        "request_id": record.request_id,
        "model": name,
        "labelled": labelled,
        "online": online(state, name),
    }


def apply(state: ServerState, record: PredictionRecord, pairs: list[tuple[int, str]]) -> list[dict[str, Any]]:
    """Score every role's answer, append to the feedback log, mark the inputs as labelled."""
    monitoring = state.monitoring
    rows, labelled = [], []
    for index, label in pairs:
        answers = {}
        for role, answer in record.answers.items():
            prediction = answer.outputs[index]
            correct = monitoring.quality_of(record.model, role, answer.version).add(label, prediction)
            answers[role] = {"version": answer.version, "prediction": prediction, "correct": correct}
        labelled.append({"index": index, "label": label, "answers": answers})
        text = record.inputs[index] if record.inputs is not None else None
        rows.append({"request_id": record.request_id, "model": record.model, "index": index,
                     "input": text, "label": label, "answers": answers})  # fmt: skip
    record.labelled.extend(i for i, _ in pairs)
    assert monitoring.store is not None
    monitoring.store.put(record)
    monitoring.feedback_log(record.model).append(rows)
    return labelled


def online(state: ServerState, name: str) -> dict[str, Any]:
    """Online quality of the versions serving ``name`` now, by role."""
    monitoring = state.monitoring
    out: dict[str, Any] = {}
    for (served_name, role), model in sorted(monitoring.current.items()):
        if served_name != name:
            continue
        s = monitoring.quality_of(name, role, model.version).summary()
        out[role] = {
            "version": model.version,
            "accuracy": s.accuracy,
            "macro_f1": s.macro_f1,
            "count": s.count,
            "window": s.window,
        }
    return out


@router.get("/v1/models/{name}/feedback", responses=ERROR_RESPONSES, summary="Online quality")
async def quality(name: str, request: Request, state: State) -> dict[str, Any]:
    """Online accuracy and macro-F1 per serving version; shadow agreement when a shadow runs."""
    lookup(state, request, name)
    body: dict[str, Any] = {"model": name, "online": online(state, name)}
    agreement = state.monitoring.agreement.get(name)
    if agreement is not None:
        body["shadow"] = {
            "compared": agreement.compared,
            "agreed": agreement.agreed,
            "agreement": agreement.rate,
        }
    return body
