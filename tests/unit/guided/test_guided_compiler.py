"""Compiling constraints: every kind, clear errors (422 codes), limits that bound the work, the cache."""

from __future__ import annotations

import json
import re

import jsonschema
import pytest
from pydantic import ValidationError

from guided_support import byte_level, walk, wordpiece
from miniml.guided.compiler import ConstraintError, GuidedCompiler, GuidedLimits
from miniml.guided.spec import GuidedSpec

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 6},
        "n": {"type": "integer", "minimum": 0, "maximum": 999},
        "ok": {"type": "boolean"},
    },
    "required": ["name", "n", "ok"],
    "additionalProperties": False,
}


def test_a_spec_sets_exactly_one_kind() -> None:
    with pytest.raises(ValidationError, match="exactly one"):
        GuidedSpec.model_validate({"regex": "a", "choice": ["a"]})
    with pytest.raises(ValidationError, match="exactly one"):
        GuidedSpec.model_validate({})
    assert GuidedSpec(choice=["a"]).kind == "choice"


def test_json_schema_walks_always_validate() -> None:
    _, compiler = byte_level()
    compiled = compiler.compile(GuidedSpec(json_schema=SCHEMA))
    for seed in range(25):
        text, complete = walk(compiler, compiled, seed)
        assert complete, text
        jsonschema.validate(json.loads(text), SCHEMA)


@pytest.mark.parametrize("support", [byte_level, wordpiece])
def test_regex_and_choice_and_grammar_walks_match(support: object) -> None:
    _, compiler = support()  # type: ignore[operator]
    regex = compiler.compile(GuidedSpec(regex="[0-9]{3}-[a-z]{2}"))
    choice = compiler.compile(GuidedSpec(choice=["yes", "no", "maybe not"]))
    grammar = compiler.compile(GuidedSpec(grammar='%ignore " "\nstart: "sum" ("a" | "b")+'))
    for seed in range(10):
        assert re.fullmatch(r"[0-9]{3}-[a-z]{2}", walk(compiler, regex, seed)[0])
        assert walk(compiler, choice, seed)[0] in {"yes", "no", "maybe not"}
        assert re.fullmatch(r" *sum( *[ab])+ *", walk(compiler, grammar, seed)[0])


def test_wordpiece_choices_are_written_in_the_tokenizers_own_words() -> None:
    _, compiler = wordpiece()
    compiled = compiler.compile(GuidedSpec(choice=["No. 5", "Jovanović"]))
    answers = {walk(compiler, compiled, seed)[0] for seed in range(12)}
    assert answers == {"no . 5", "jovanovic"}, answers


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ({"regex": "(ab"}, "unclosed group"),
        ({"grammar": "start: missing_rule"}, "missing_rule"),
        ({"json_schema": {"type": "objekt"}}, "objekt"),
    ],
)
def test_invalid_constraints_say_what_is_wrong(spec: dict[str, object], words: str) -> None:
    _, compiler = byte_level()
    with pytest.raises(ConstraintError, match=re.escape(words)) as caught:
        compiler.compile(GuidedSpec.model_validate(spec))
    assert caught.value.code == "invalid_constraint"


def test_limits_bound_size_work_and_time() -> None:
    tok, compiler = byte_level()
    small = GuidedCompiler(tok, compiler.vocab, GuidedLimits(max_chars=100))
    with pytest.raises(ConstraintError, match="characters") as caught:
        small.compile(GuidedSpec(regex="a" * 101))
    assert caught.value.code == "constraint_too_large"
    big_choice = GuidedSpec(choice=[f"option {i} {'x' * (i % 7)}" for i in range(1000)])
    tight = GuidedCompiler(tok, compiler.vocab, GuidedLimits(max_grammar_size=1000))
    with pytest.raises(ConstraintError) as caught:
        tight.compile(big_choice)
    assert caught.value.code == "constraint_too_complex"
    hasty = GuidedCompiler(tok, compiler.vocab, GuidedLimits(compile_timeout_s=1e-6))
    with pytest.raises(ConstraintError, match="did not compile within") as caught:
        hasty.compile(big_choice)
    assert caught.value.code == "constraint_too_complex"


def test_compiled_grammars_are_cached_by_their_text() -> None:
    _, compiler = byte_level()
    first = compiler.compile(GuidedSpec(json_schema={"type": "object", "required": ["a"]}))
    again = compiler.compile(GuidedSpec(json_schema={"required": ["a"], "type": "object"}))
    assert first is again
    assert first.matcher() is not again.matcher()  # each row gets its own matcher
