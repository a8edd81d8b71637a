"""Constraints → compiled grammars for one tokenizer, with bounded compilation and a cache.

Why llguidance (``bench/guided_overhead.py`` measures the three maintained engines on our tokenizers with
the same token bytes): the per-token work (mask + advance) is tens of microseconds for all of them, against
milliseconds for a forward pass, so speed does not decide; llguidance compiles a JSON schema, a regex or a
Lark grammar in about 1 ms (xgrammar 1-13 ms, outlines-core 9-216 ms and no context-free grammars at all),
reads Lark — including ``%ignore``, case-insensitive literals and nested ``%json`` — which the WordPiece
models need (see :mod:`miniml.guided.literals`), bounds every compilation by "fuel" limits instead of time
(``LLParserLimits``: a grammar that is too large or too complex fails with a message, it never runs away),
drops the GIL while it compiles, and is a 3 MB wheel without torch or triton.

Compilation runs on a small thread pool with a wall-clock limit on top of the fuel limits: the caller gets
:class:`ConstraintError` (→ HTTP 422) at the limit and never waits longer. Compiled grammars are cached by
their text (LRU); each row then gets its own matcher, a cheap copy.
"""

from __future__ import annotations

import concurrent.futures
import json
import re
import threading
from typing import Any

from cachetools import LRUCache
from pydantic import BaseModel, ConfigDict, Field

from miniml.errors import MinimlError
from miniml.guided.literals import Speller, alternatives
from miniml.guided.spec import GuidedSpec
from miniml.guided.vocab import Vocabulary

LEAD = '" "?'  # a WordPiece answer starts with the space its first word carries
JSON_OPTIONS = {"whitespace_flexible": False}  # compact JSON: no runs of whitespace eating the token budget


class GuidedLimits(BaseModel):
    """Bounds on compiling constraints (serve config ``generation.guided``)."""

    model_config = ConfigDict(extra="forbid")

    compile_timeout_s: float = Field(
        default=2.0, gt=0, le=60, description="longest a compilation may take: 422"
    )
    max_chars: int = Field(
        default=65_536, ge=16, description="longest constraint text (schema, regex, grammar)"
    )
    max_grammar_size: int = Field(
        default=200_000, ge=1000, description="llguidance: symbols in the compiled grammar"
    )
    lexer_fuel: int = Field(default=1_000_000, ge=1000, description="llguidance: fuel for building the lexer")
    max_lexer_states: int = Field(
        default=100_000, ge=100, description="llguidance: lexer states a grammar may build"
    )
    cache_size: int = Field(
        default=256, ge=1, description="compiled grammars kept (LRU, keyed by their text)"
    )


class ConstraintError(MinimlError):
    """A constraint is invalid, too large, or too slow to compile (HTTP 422 ``code``)."""

    def __init__(self, message: str, *, code: str = "invalid_constraint", hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.code = code


class CompiledConstraint:
    """A compiled grammar; ``matcher()`` gives a fresh matcher for one row."""

    def __init__(self, prototype: Any, key: tuple[str, str]) -> None:
        self._prototype = prototype
        self.key = key

    def matcher(self) -> Any:
        return self._prototype.deep_copy()


_POOL = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="miniml-guided-compile")


class GuidedCompiler:
    """Compiles constraints for one tokenizer (one per loaded model; thread-safe)."""

    def __init__(self, tokenizer: Any, vocab: Vocabulary, limits: GuidedLimits | None = None) -> None:
        import llguidance

        self.vocab = vocab
        self.limits = limits or GuidedLimits()
        self.speller = Speller(tokenizer, vocab)
        self._ll = llguidance
        self._tokenizer = ll_tokenizer(tokenizer, vocab)
        self._cache: LRUCache[tuple[str, str], CompiledConstraint] = LRUCache(self.limits.cache_size)
        self._lock = threading.Lock()

    def surface_text(self, tokens: list[int]) -> str:
        """The text ``tokens`` spell in this vocabulary (what a grammar checked), less a leading space."""
        raw = b"".join(self.vocab.tokens[t] for t in tokens if not self.vocab.tokens[t].startswith(b"\xff"))
        return raw.decode("utf-8", "replace").removeprefix(" ")

    # ------------------------------------------------------------------ spec → llguidance grammar text
    def grammar_text(self, spec: GuidedSpec) -> str:
        """The llguidance grammar of ``spec`` for this tokenizer (not yet checked)."""
        m = self._ll.LLMatcher
        kind = spec.kind
        if kind == "choice":
            return m.grammar_from_lark(self.choice_lark(spec.choice or []))
        if kind == "json_schema":
            schema = spec.json_schema
            if isinstance(schema, dict):
                schema = {**schema, "x-guidance": {**JSON_OPTIONS, **schema.get("x-guidance", {})}}
            if self.vocab.exact:
                return m.grammar_from_json_schema(schema if isinstance(schema, dict) else json.dumps(schema))
            return m.grammar_from_lark(f"start: {LEAD} body\nbody: %json {json.dumps(schema)}")
        if kind == "regex":
            if self.vocab.exact:
                return m.grammar_from_regex(spec.regex or "")
            return m.grammar_from_lark(f"start: {LEAD} BODY\nBODY: /{_slash_escaped(spec.regex or '')}/")
        return m.grammar_from_lark(self.lark_text(spec.grammar or ""))

    def lark_text(self, lark: str) -> str:
        """A Lark grammar as given (exact tokenizers) or nested after the leading space (WordPiece)."""
        if self.vocab.exact:
            return lark
        return f"start: {LEAD} body\nbody: %lark {{\n{lark}\n}}"

    def choice_lark(self, options: list[str]) -> str:
        literals = [lit for lit in (self.speller.literal(o) for o in options) if lit is not None]
        if not literals:
            raise ConstraintError("choice: this model's tokenizer can write none of the options")
        head = "" if self.vocab.exact else f"start: {LEAD} body\nbody: "
        return (head or "start: ") + alternatives(literals)

    # ------------------------------------------------------------------ compiling
    def compile(self, spec: GuidedSpec, limits: GuidedLimits | None = None) -> CompiledConstraint:
        """The compiled ``spec`` (cached by its text); ConstraintError when invalid, too big or too slow.

        ``limits`` replaces the compiler's own for this call (the server's ``generation.guided``).
        """
        limits = limits or self.limits
        key = spec.key()
        if len(key[1]) > limits.max_chars:
            raise ConstraintError(
                f"the {spec.kind} constraint has {len(key[1])} characters; the limit is {limits.max_chars}",
                code="constraint_too_large",
            )
        with self._lock:
            found = self._cache.get(key)
        if found is not None:
            return found
        try:
            grammar = self.grammar_text(spec)
        except ValueError as err:
            raise ConstraintError(f"invalid {spec.kind}: {_first_line(err)}") from None
        return self._compiled(key, grammar, spec.kind, limits)

    def compile_lark(
        self, lark: str, label: str = "grammar", limits: GuidedLimits | None = None
    ) -> CompiledConstraint:
        """A Lark grammar written for this tokenizer (a model's filled-in template), cached by its text."""
        key = ("lark", lark)
        with self._lock:
            found = self._cache.get(key)
        if found is not None:
            return found
        grammar = self._ll.LLMatcher.grammar_from_lark(self.lark_text(lark))
        return self._compiled(key, grammar, label, limits or self.limits)

    def _compiled(
        self, key: tuple[str, str], grammar: str, label: str, limits: GuidedLimits
    ) -> CompiledConstraint:
        future = _POOL.submit(self._build, grammar, limits)
        try:
            matcher = future.result(timeout=limits.compile_timeout_s)
        except concurrent.futures.TimeoutError:
            raise ConstraintError(
                f"the {label} constraint did not compile within {limits.compile_timeout_s:g}s",
                code="constraint_too_complex",
                hint="simplify it",
            ) from None
        if matcher.is_error():
            message = _first_line(matcher.get_error())
            code = "constraint_too_complex" if _is_limit(message) else "invalid_constraint"
            raise ConstraintError(f"invalid {label}: {message}", code=code)
        compiled = CompiledConstraint(matcher, key)
        with self._lock:
            self._cache[key] = compiled
        return compiled

    def _build(self, grammar: str, lim: GuidedLimits) -> Any:
        limits = self._ll.LLParserLimits(
            max_grammar_size=lim.max_grammar_size,
            initial_lexer_fuel=lim.lexer_fuel,
            max_lexer_states=lim.max_lexer_states,
            verbose_errors=False,  # errors go back to clients: no parser internals
        )
        return self._ll.LLMatcher(self._tokenizer, grammar, log_level=0, limits=limits)


def ll_tokenizer(tokenizer: Any, vocab: Vocabulary) -> Any:
    """llguidance's view of a tokenizer.

    llguidance tokenizes the text a grammar forces and allows only the first token of that tokenization,
    so its tokenize function must return tokens whose bytes spell exactly the text it got. The tokenizer's
    own function does that for exact vocabularies; for WordPiece it does not (``positive`` comes back as
    `` positive``), so there the greedy longest match over the token bytes stands in — which is how
    WordPiece itself splits a word.
    """
    import llguidance

    if vocab.exact:
        return llguidance.LLTokenizer(
            llguidance.TokenizerWrapper(_TokenizerView(vocab, tokenizer)), n_vocab=vocab.size
        )
    bare = llguidance.LLTokenizer(llguidance.TokenizerWrapper(_TokenizerView(vocab)), n_vocab=vocab.size)
    return llguidance.LLTokenizer(
        llguidance.TokenizerWrapper(_TokenizerView(vocab, greedy=bare.greedy_tokenize)), n_vocab=vocab.size
    )


class _TokenizerView:
    """What llguidance reads from a tokenizer: token bytes, end / special ids, and a tokenize function."""

    def __init__(self, vocab: Vocabulary, tokenizer: Any = None, greedy: Any = None) -> None:
        self.eos_token_id = vocab.end_ids[0] if vocab.end_ids else None
        self.bos_token_id = None
        self.tokens = list(vocab.tokens)
        self.special_token_ids = list(vocab.special_ids)
        self._tokenizer = tokenizer
        self._greedy = greedy

    def __call__(self, text: str | bytes) -> list[int]:
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        if self._greedy is not None:
            return list(self._greedy(text))
        if self._tokenizer is None:
            return []
        return list(self._tokenizer(text, add_special_tokens=False)["input_ids"])


LIMIT_WORDS = re.compile(r"too (large|big|complex|many)|limit|fuel|exceed", re.IGNORECASE)


def _is_limit(message: str) -> bool:
    return bool(LIMIT_WORDS.search(message))


def _first_line(err: object) -> str:
    """llguidance's message without its source excerpts: the first line and any ``error:`` lines."""
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    if not lines:
        return type(err).__name__
    kept = [lines[0], *(line for line in lines[1:] if line.lower().startswith("error"))]
    return " ".join(kept)[:300]


def _slash_escaped(regex: str) -> str:
    """``regex`` inside Lark's ``/.../``: unescaped slashes escaped."""
    return re.sub(r"(?<!\\)/", r"\\/", regex)
