"""What a request may constrain its answer to: a JSON schema, a regular expression, a grammar, or a choice.

``GuidedSpec`` is the request-level form (``/generate``'s ``guided``; OpenAI's ``response_format`` maps onto
it). Exactly one field is set. ``key()`` is the canonical text the compiled-grammar cache is keyed by, so
two requests with the same schema (keys in any order) share one compilation.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

KINDS = ("json_schema", "regex", "grammar", "choice")


class GuidedSpec(BaseModel):
    """One structured-output constraint: exactly one of json_schema, regex, grammar, choice."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "json_schema": {
                        "type": "object",
                        "properties": {"ok": {"type": "boolean"}},
                        "required": ["ok"],
                    }
                },
                {"regex": "[0-9]{4}-[0-9]{2}-[0-9]{2}"},
                {"choice": ["positive", "negative"]},
                {"grammar": 'start: "yes" | "no"'},
            ]
        },
    )

    json_schema: dict[str, Any] | bool | None = Field(
        default=None, description="the answer is JSON valid against it"
    )
    regex: str | None = Field(
        default=None, min_length=1, description="the answer matches it in full (Rust regex syntax)"
    )
    grammar: str | None = Field(
        default=None, min_length=1, description="a context-free grammar in Lark syntax"
    )
    choice: list[str] | None = Field(
        default=None, min_length=1, max_length=1024, description="the answer is exactly one of these strings"
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> GuidedSpec:
        given = [k for k in KINDS if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"set exactly one of {', '.join(KINDS)} (got {', '.join(given) or 'none'})")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in KINDS if getattr(self, k) is not None)

    def text(self) -> str:
        """The constraint as canonical text (JSON sorted by key for schemas and choices)."""
        value = getattr(self, self.kind)
        return value if isinstance(value, str) else json.dumps(value, sort_keys=True, ensure_ascii=False)

    def key(self) -> tuple[str, str]:
        return (self.kind, self.text())


JSON_OBJECT = GuidedSpec(json_schema={"type": "object"})  # OpenAI's response_format {"type": "json_object"}
