"""Model-level constraints: a Lark grammar template whose slots are filled from each prompt.

A model folder may carry one (``miniml.json`` → ``preprocessing.constraint``, set from the train config's
``model.constraint``); ``evaluate``, ``predict`` and ``serve`` apply it to every prompt unless a request
brings its own constraint. A slot ``{{name}}`` in the grammar is replaced by a Lark expression built from
the first match of the slot's ``pattern`` (a regex with one group, matched line by line) in the prompt:

- ``literal``: the matched text, as one literal (e.g. a table id);
- ``choice``: the matched text split at ``split``, one literal per part (e.g. the ``columns:`` line);
- ``spans``: every run of up to ``max_words`` consecutive words of the matched text, skipping runs that
  contain one of ``exclude`` (e.g. values copied from the question, never a quote that could end a SQL
  string early) and runs that begin or end with a mark made of ``edges`` (a value never ends with the
  question's ``?``).

Literals are written the way the model's tokenizer can write them (:mod:`miniml.guided.literals`). Taking
the *first* match of each pattern matters for safety: text a user smuggles into a later line (a second
``columns:`` line inside the question) is never read as a slot.

llguidance lexes each literal of a rule greedily: in ``text: ("ann" | "ann scored")`` followed by ``" " "'"``
the lexer, having read ``ann`` and a space, only goes on towards ``ann scored`` and never backtracks, so
``'ann '`` is refused. Slots whose options begin one another belong inside a terminal that ends at a
delimiter (``VALUE: "'" " "? TEXT " "? "'"`` with ``TEXT: {{value}}``), as examples/text2sql does.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from miniml.guided.compiler import ConstraintError
from miniml.guided.literals import WORD_RE, Speller, alternatives

SLOT_RE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


class Slot(BaseModel):
    """Where a slot's text comes from in the prompt, and how it becomes Lark."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pattern: str = Field(description="regex with one group, searched line by line (first match wins)")
    render: Literal["literal", "choice", "spans"] = "literal"
    split: str = Field(default=", ", min_length=1, description="choice: separator between options")
    max_words: int = Field(default=8, ge=1, le=64, description="spans: longest run of words")
    exclude: str = Field(
        default="'", description="spans: runs containing any of these characters are left out"
    )
    edges: str = Field(
        default="",
        description="spans: runs that begin or end with a mark made only of these characters are left out "
        "(e.g. '?': a question's last mark is never part of a value copied from it)",
    )

    @field_validator("pattern")
    @classmethod
    def _one_group(cls, pattern: str) -> str:
        try:
            compiled = re.compile(pattern, re.MULTILINE)
        except re.error as err:
            raise ValueError(f"invalid slot pattern {pattern!r}: {err}") from None
        if compiled.groups != 1:
            raise ValueError(f"slot pattern {pattern!r} must have exactly one group")
        return pattern


class ModelConstraint(BaseModel):
    """A grammar template (Lark) with slots filled from the prompt (train config ``model.constraint``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    grammar: str | None = Field(default=None, description="the Lark template, inline")
    grammar_file: Path | None = Field(default=None, description="the Lark template, read from this file")
    slots: dict[str, Slot] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_grammar(self) -> ModelConstraint:
        if (self.grammar is None) == (self.grammar_file is None):
            raise ValueError("set exactly one of constraint.grammar or constraint.grammar_file")
        names = set(SLOT_RE.findall(self.template))
        if missing := sorted(names - set(self.slots)):
            raise ValueError(f"constraint grammar uses slots {missing} that constraint.slots does not define")
        if unused := sorted(set(self.slots) - names):
            raise ValueError(f"constraint.slots {unused} do not appear in the grammar as {{{{name}}}}")
        return self

    @property
    def template(self) -> str:
        if self.grammar is not None:
            return self.grammar
        try:
            return Path(str(self.grammar_file)).read_text(encoding="utf-8")
        except OSError as err:
            raise ValueError(
                f"cannot read constraint.grammar_file {self.grammar_file}: {err.strerror}"
            ) from None

    def saved(self) -> ModelConstraint:
        """The form stored in a model folder: the grammar inline, so the folder stands alone."""
        return ModelConstraint(grammar=self.template, slots=self.slots)

    def render(self, prompt: str, speller: Speller) -> str:
        """The template with every slot filled from ``prompt``; ConstraintError when a slot finds nothing."""
        values = {name: _fill(name, slot, prompt, speller) for name, slot in self.slots.items()}
        return SLOT_RE.sub(lambda m: values[m.group(1)], self.template)


def _fill(name: str, slot: Slot, prompt: str, speller: Speller) -> str:
    match = re.search(slot.pattern, prompt, re.MULTILINE)
    text = match.group(1).strip() if match and match.group(1) else ""
    if not text:
        raise ConstraintError(
            f"the prompt has nothing for the model constraint's slot {name!r} (pattern {slot.pattern!r})",
            hint="build the prompt the way the model was trained, or send your own constraint",
        )
    if slot.render == "literal":
        options = [speller.literal(text)]
    elif slot.render == "choice":
        options = [speller.literal(part.strip()) for part in text.split(slot.split) if part.strip()]
    else:
        options = _spans(text, slot, speller)
    found = [o for o in options if o]
    if not found:
        raise ConstraintError(f"the model's tokenizer cannot write any of slot {name!r}'s text {text[:80]!r}")
    return alternatives(found)


def _spans(text: str, slot: Slot, speller: Speller) -> list[str | None]:
    """Literals of every run of 1..max_words words of ``text`` that holds no excluded character."""
    found = list(WORD_RE.finditer(text))
    words = [(m.start(), m.end()) for m in found]
    edge = [bool(slot.edges) and set(m.group()) <= set(slot.edges) for m in found]
    out: list[str | None] = []
    for first in range(len(words)):
        if edge[first]:
            continue
        for last in range(first, min(first + slot.max_words, len(words))):
            chunk = text[words[first][0] : words[last][1]]
            if any(c in chunk for c in slot.exclude):
                break
            if not edge[last]:
                out.append(speller.literal(chunk))
    return out
