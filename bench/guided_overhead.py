"""Guided decoding engines compared on our tokenizers: compile time and per-token overhead.

    python bench/guided_overhead.py                     # the engines importable here
    PYTHONPATH=/tmp/cand python bench/guided_overhead.py --engines llguidance xgrammar outlines-core

For each tokenizer (MiniLM's WordPiece, the text2sql / lora models' tokenizer; a byte-level BPE of 16,000
tokens trained here on wikisql-mini text, the shape of GPT-2-style causal LMs) and each constraint (a JSON
schema, a regular expression, a SQL grammar in Lark), every engine compiles the constraint (cold, timed),
then drives a seeded random walk of up to 64 tokens: per step it computes the allowed-token mask, applies it
to a random logits row (-inf where not allowed), takes the arg-max and advances the matcher. The figure is
the mean and p99 of that per-step work in microseconds — the time guided decoding adds to each generated
token of one row (a forward pass of the tiny test models takes ~1 ms, of MiniLM's decoder ~5 ms on CPU).
"mask" and "advance" are the engine's own work; "apply" (bits → -inf in the logits) is miniml's code, the
same for all. Every engine sees the same token bytes (miniml.guided.vocab), so they mask the same
language; "setup" is building the engine's tokenizer index once per model.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 20},
        "age": {"type": "integer"},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 12}, "maxItems": 3},
    },
    "required": ["name", "age", "tags"],
    "additionalProperties": False,
}
REGEX = r"[0-9]{4}-[0-9]{2}-[0-9]{2}( [a-z]+){1,3}"
# Written without %ignore so that every engine accepts it: explicit optional spaces between words.
SQL_LARK = r"""
start: ws "select" ws agg? col ws "from" ws "1-10015132-16" ws "where" ws cond (ws "and" ws cond)*
agg: ("count" | "max" | "min" | "avg" | "sum") ws
col: "player" | "no" ws "." | "nationality" | "position" | "years in toronto" | "school" ws "/" ws "club team"
cond: col ws op ws value
op: "=" | ">" | "<"
value: NUMBER | "'" ws WORD (ws WORD)* ws "'"
ws: " "?
NUMBER: /[0-9]+/
WORD: /[a-z]+/
"""


def tokenizers() -> dict[str, Any]:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    from miniml.models.hf import resolve_reference

    minilm = AutoTokenizer.from_pretrained(resolve_reference("minilm"))
    texts = _wikisql_texts()
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=16000,
        special_tokens=["<pad>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(texts * 3, trainer=trainer)
    wrapped = PreTrainedTokenizerFast(tokenizer_object=bpe, pad_token="<pad>", eos_token="</s>")
    return {"MiniLM WordPiece": minilm, f"byte-level BPE ({len(wrapped)})": wrapped}


def _wikisql_texts() -> list[str]:
    from miniml.config import load_config
    from miniml.data.prepare import PrepareConfig, prepare

    data = prepare(load_config(PrepareConfig, REPO / "examples" / "text2sql" / "data.yaml"))
    frame = data.split("train")
    return [f"{a} {b}" for a, b in zip(frame["input"], frame["target"], strict=True)]


# ---------------------------------------------------------------- engines: same five operations each
class Engine:
    name = ""

    def __init__(self, vocab: Any) -> None:
        self.vocab = vocab

    def compile(self, kind: str, text: str) -> Any: ...
    def matcher(self, compiled: Any) -> Any: ...
    def fill(self, matcher: Any, mask: Any) -> None: ...
    def consume(self, matcher: Any, token: int) -> bool: ...

    def new_mask(self) -> Any:
        """One row of 32-bit words, the bit layout all three engines write."""
        import torch

        return torch.zeros(1, (self.vocab.size + 31) // 32, dtype=torch.int32)

    def apply(self, logits: Any, mask: Any) -> None:
        """The same for every engine: miniml's own (numpy unpack + in-place fill)."""
        from miniml.guided.mask import apply_bitmask

        apply_bitmask(logits, mask, [0])


class LLGuidance(Engine):
    name = "llguidance"

    def __init__(self, vocab: Any, tokenizer: Any) -> None:
        super().__init__(vocab)
        import llguidance

        from miniml.guided.compiler import ll_tokenizer

        self.ll = llguidance
        self.executor = llguidance.LLExecutor()
        self.tokenizer = ll_tokenizer(tokenizer, vocab)

    def compile(self, kind: str, text: str) -> Any:
        m = self.ll.LLMatcher
        grammar = {
            "json": lambda: m.grammar_from_json_schema(text),
            "regex": lambda: m.grammar_from_regex(text),
            "lark": lambda: m.grammar_from_lark(text),
        }[kind]()
        matcher = m(self.tokenizer, grammar, log_level=0)
        if matcher.is_error():
            raise ValueError(matcher.get_error())
        return matcher

    def matcher(self, compiled: Any) -> Any:
        return compiled.deep_copy()

    def fill(self, matcher: Any, mask: Any) -> None:
        self.executor.unsafe_compute_mask_ptr([(matcher, 0)], mask.data_ptr(), mask.shape[1] * 4, 1)

    def consume(self, matcher: Any, token: int) -> bool:
        return bool(matcher.consume_token(token))


class XGrammar(Engine):
    name = "xgrammar"

    def __init__(self, vocab: Any, tokenizer: Any) -> None:
        super().__init__(vocab)
        import xgrammar as xgr

        self.xgr = xgr
        info = xgr.TokenizerInfo(
            [t if not t.startswith(b"\xff") else b"" for t in vocab.tokens],
            xgr.VocabType.RAW,
            vocab_size=vocab.size,
            stop_token_ids=list(vocab.end_ids),
        )
        self.compiler = xgr.GrammarCompiler(info, max_threads=1, cache_enabled=False)

    def compile(self, kind: str, text: str) -> Any:
        c = self.compiler
        return {"json": c.compile_json_schema, "regex": c.compile_regex, "lark": c.compile_lark}[kind](text)

    def matcher(self, compiled: Any) -> Any:
        return self.xgr.GrammarMatcher(compiled)

    def fill(self, matcher: Any, mask: Any) -> None:
        matcher.fill_next_token_bitmask(mask)

    def consume(self, matcher: Any, token: int) -> bool:
        return bool(matcher.accept_token(token))


class OutlinesCore(Engine):
    name = "outlines-core"

    def __init__(self, vocab: Any, tokenizer: Any) -> None:
        super().__init__(vocab)
        import outlines_core as oc

        self.oc = oc
        table: dict[bytes, list[int]] = {}
        for i, t in enumerate(vocab.tokens):
            if i not in vocab.end_ids and not t.startswith(b"\xff") and t:
                table.setdefault(t, []).append(i)
        self.vocabulary = oc.Vocabulary(vocab.end_ids[0], table)

    def compile(self, kind: str, text: str) -> Any:
        if kind == "lark":
            raise NotImplementedError("no context-free grammars")
        regex = self.oc.json_schema.build_regex_from_schema(text) if kind == "json" else text
        return self.oc.Index(regex, self.vocabulary)

    def matcher(self, compiled: Any) -> Any:
        return self.oc.Guide(compiled)

    def fill(self, matcher: Any, mask: Any) -> None:
        matcher.write_mask_into(mask.data_ptr(), mask.numel(), mask.element_size())

    def consume(self, matcher: Any, token: int) -> bool:
        matcher.advance(token)
        return True


ENGINES: dict[str, Callable[[Any, Any], Engine]] = {
    "llguidance": LLGuidance,
    "xgrammar": XGrammar,
    "outlines-core": OutlinesCore,
}


# ---------------------------------------------------------------- measurement
def walk(engine: Engine, compiled: Any, seed: int, steps: int = 64) -> list[tuple[float, float, float]]:
    """Seconds of (mask, apply, advance) per generated token, over one seeded random walk."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    matcher = engine.matcher(compiled)
    mask = engine.new_mask()
    times = []
    ends = set(engine.vocab.end_ids)
    for _ in range(steps):
        logits = torch.randn(1, engine.vocab.size, generator=gen)
        t0 = time.perf_counter()
        engine.fill(matcher, mask)
        t1 = time.perf_counter()
        engine.apply(logits, mask)
        t2 = time.perf_counter()
        token = int(logits.argmax())
        if logits[0, token] == float("-inf"):
            break  # a dead end (no token allowed)
        if token in ends:
            times.append((t1 - t0, t2 - t1, 0.0))
            break
        t3 = time.perf_counter()
        ok = engine.consume(matcher, token)
        times.append((t1 - t0, t2 - t1, time.perf_counter() - t3))
        if not ok:
            break
    return times


def measure(engine: Engine, kind: str, text: str, walks: int) -> dict[str, Any]:
    start = time.perf_counter()
    try:
        compiled = engine.compile(kind, text)
    except NotImplementedError as err:
        return {"compile_ms": None, "note": str(err)}
    compile_ms = (time.perf_counter() - start) * 1000
    walk(engine, compiled, seed=10_000)  # warm: first masks fill the engine's caches
    times = [t for seed in range(walks) for t in walk(engine, compiled, seed)]
    us = sorted(sum(t) * 1e6 for t in times)
    if not us:
        return {"compile_ms": round(compile_ms, 1), "tokens": 0}
    return {
        "compile_ms": round(compile_ms, 1),
        "tokens": len(us),
        "mask_us": round(statistics.fmean(t[0] for t in times) * 1e6, 1),
        "apply_us": round(statistics.fmean(t[1] for t in times) * 1e6, 1),
        "advance_us": round(statistics.fmean(t[2] for t in times) * 1e6, 1),
        "mean_us": round(statistics.fmean(us), 1),
        "p99_us": round(us[min(len(us) - 1, int(len(us) * 0.99))], 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", nargs="+", default=list(ENGINES), choices=list(ENGINES))
    parser.add_argument("--walks", type=int, default=20, help="random walks per constraint")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    from serve_load import machine

    from miniml.guided.vocab import vocabulary

    print(json.dumps(machine()), flush=True)
    constraints = {
        "json schema": ("json", json.dumps(SCHEMA)),
        "regex": ("regex", REGEX),
        "sql lark": ("lark", SQL_LARK),
    }
    rows = []
    for tok_name, tok in tokenizers().items():
        vocab = vocabulary(tok, [tok.sep_token_id if tok.sep_token_id is not None else tok.eos_token_id])
        for engine_name in args.engines:
            try:
                start = time.perf_counter()
                engine = ENGINES[engine_name](vocab, tok)
                setup_ms = (time.perf_counter() - start) * 1000
            except ImportError as err:
                print(f"{engine_name}: not installed ({err})")
                continue
            for label, (kind, text) in constraints.items():
                row = {"tokenizer": tok_name, "vocab": vocab.size, "engine": engine_name, "constraint": label}
                row |= {"setup_ms": round(setup_ms, 1), **measure(engine, kind, text, args.walks)}
                rows.append(row)
                print(json.dumps(row), flush=True)
    print(
        "\n| tokenizer | engine | constraint | setup ms | compile ms | mask µs | apply µs | advance µs "
        "| per token µs | p99 µs |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        mean = r.get("mean_us")
        print(
            f"| {r['tokenizer']} | {r['engine']} | {r['constraint']} | {r['setup_ms']} | "
            f"{r['compile_ms'] if r['compile_ms'] is not None else 'n/a'} | {r.get('mask_us', '')} | "
            f"{r.get('apply_us', '')} | {r.get('advance_us', '')} | "
            f"{mean if mean is not None else r.get('note', 'n/a')} | {r.get('p99_us', '')} |"
        )
    print(f"\nload average after the run: {os.getloadavg()[0]:.2f}")
    if args.out:
        args.out.write_text(json.dumps({"machine": machine(), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
