"""The semantic cache on paraphrased WikiSQL traffic: correct hits, wrong hits and misses by threshold, with
and without the guard; then latency through a real server with and without the cache.

Traffic: every text2sql prompt of wikisql-mini (``examples/text2sql/data.yaml``: table, columns and
question, as the model reads them), each asked once in a seeded random order. Prompts about the same
table with the same SQL (ignoring case) are paraphrases; a hit is *correct* when the cached prompt's table
and SQL are the request's, *wrong* otherwise (its answer's SQL differs). A *paraphrased repeat* is a
request whose group was asked before: the hits the cache exists for. The replay runs the server's own
index and guard (:class:`~miniml.serve.semantic_index.SemanticIndex`) on the embedder's vectors.

Latency: ``--requests`` prompts (the paraphrase groups first, then others) sent one at a time to
``miniml serve`` with the semantic cache at ``--threshold`` and to one without any cache; the generator is
``--model`` (default: a tiny GPT-2 built locally, untrained: its time per answer is the floor, a real
text2sql model takes far longer).

    python bench/semantic_cache.py                                   # packaged MiniLM as the embedder
    python bench/semantic_cache.py --embedder models:/paraphrase/2 --model models:/text2sql@champion
    python bench/semantic_cache.py --embed-pattern 'Q: (.*)' --scope-pattern '^table: .*'  # question only

With ``--embed-pattern``/``--scope-pattern`` (the server's ``cache.semantic.embed_pattern`` and
``scope_pattern``) the replay and the server embed only the selected part and scope entries by the other.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from serve_load import REPO, Server, exit_on_sigterm, free_port, machine, miniml_server

THRESHOLDS = [0.80, 0.82, 0.84, 0.86, 0.88, 0.90, 0.92, 0.94, 0.95, 0.96, 0.97, 0.98]


@dataclass
class Tally:
    correct: int = 0
    wrong: int = 0
    misses: int = 0
    repeats: int = 0
    repeat_hits: int = 0
    wrong_examples: list[tuple[str, str]] = field(default_factory=list)

    def row(self, threshold: float, guard: bool, total: int) -> dict[str, object]:
        return {
            "threshold": threshold,
            "guard": guard,
            "correct_hits": self.correct,
            "wrong_hits": self.wrong,
            "misses": self.misses,
            "wrong_pct_of_answered": round(100 * self.wrong / total, 2),
            "repeat_hit_pct": round(100 * self.repeat_hits / max(1, self.repeats), 1),
        }


def traffic(seed: int, others: int | None) -> list[dict[str, str]]:
    """Every wikisql-mini prompt once (or the paraphrases and ``others`` more), shuffled; ``group`` is its
    table + lower-cased SQL."""
    import pandas as pd

    from miniml.config import load_config
    from miniml.data.prepare import PrepareConfig, prepare

    dataset = prepare(load_config(PrepareConfig, REPO / "examples" / "text2sql" / "data.yaml"))
    frame = pd.concat([dataset.split(s) for s in ("train", "validation", "test")], ignore_index=True)
    rows = [
        {
            "prompt": str(r.input),
            "question": str(r.question),
            "group": f"{r.table}\x1f{str(r.target).lower()}",
        }
        for r in frame.itertuples()
    ]
    if others is not None:  # every paraphrase group's prompts, and a seeded sample of the other prompts
        sizes: dict[str, int] = {}
        for row in rows:
            sizes[row["group"]] = sizes.get(row["group"], 0) + 1
        single = [r for r in rows if sizes[r["group"]] == 1]
        keep = {id(r) for r in random.Random(seed).sample(single, min(others, len(single)))}
        rows = [r for r in rows if sizes[r["group"]] > 1 or id(r) in keep]
    random.Random(seed).shuffle(rows)
    return rows


def embedder_folder(uri: str | None, work: Path) -> Path:
    from miniml.runtime import resolve
    from miniml.tasks.registry import get_task
    from miniml.version import __version__

    if uri is not None:
        return resolve(uri).path
    folder = work / "minilm"
    settings = {"name_or_path": "minilm", "max_tokens": 256}
    get_task("embedding").import_model(settings, folder, {"name": "minilm", "miniml_version": __version__})
    return folder


def embed_all(folder: Path, texts: list[str]) -> np.ndarray:
    from miniml.tasks import load_model

    embedder = load_model(str(folder)).predictor
    out = [embedder.embed(texts[i : i + 64]) for i in range(0, len(texts), 64)]
    return np.concatenate(out)  # (N, D)


def split_all(rows: list[dict[str, str]], args: argparse.Namespace) -> list[tuple[str, str]]:
    """(scope, embedded text) of each prompt, as the server splits it."""
    import re

    from miniml.serve.semantic import split_prompt
    from miniml.tasks.serving import normalize_text

    embed = re.compile(args.embed_pattern) if args.embed_pattern else None
    scope = re.compile(args.scope_pattern) if args.scope_pattern else None
    return [split_prompt(normalize_text(r["prompt"]), embed, scope) for r in rows]


def replay(
    rows: list[dict[str, str]],
    split: list[tuple[str, str]],
    vectors: np.ndarray,
    threshold: float,
    guard: bool,
) -> Tally:
    """The server's index and guard on the traffic; answers are the groups."""
    from miniml.serve.semantic_index import SemanticIndex

    index = SemanticIndex(vectors.shape[1], max_entries=100_000, ttl_s=1e9)
    seen: set[str] = set()
    tally = Tally()
    for row, (scope, text), vector in zip(rows, split, vectors, strict=True):
        repeat = row["group"] in seen
        tally.repeats += repeat
        match = index.lookup(scope, text, vector, threshold, guard)
        if match.entry is None:
            tally.misses += 1
            index.add(scope, text, vector, row["group"].encode())
            seen.add(row["group"])
        elif match.entry.answer.decode() == row["group"]:
            tally.correct += 1
            tally.repeat_hits += repeat
        else:
            tally.wrong += 1
            if len(tally.wrong_examples) < 3:
                tally.wrong_examples.append((row["question"], match.entry.text.rsplit("Q: ", 1)[-1]))
    return tally


def sweep(
    rows: list[dict[str, str]], split: list[tuple[str, str]], vectors: np.ndarray
) -> list[dict[str, object]]:
    print(
        "\n| threshold | guard | correct hits | wrong hits | misses | wrong % of answered | repeats hit % |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|")
    table = []
    for threshold in THRESHOLDS:
        for guard in (False, True):
            tally = replay(rows, split, vectors, threshold, guard)
            row = tally.row(threshold, guard, len(rows))
            table.append({**row, "wrong_examples": tally.wrong_examples})
            print(
                f"| {threshold:.2f} | {'on' if guard else 'off'} | {tally.correct} | {tally.wrong} | "
                f"{tally.misses} | {row['wrong_pct_of_answered']} | {row['repeat_hit_pct']} |"
            )
    repeats = replay(rows, split, vectors, 1.01, False).repeats
    print(f"({len(rows)} requests, {repeats} paraphrased repeats)")
    return table


def tiny_generator(work: Path) -> Path:
    """An untrained 2-layer GPT-2 (byte-level BPE of the tests) as a causal_lm model folder that takes
    text2sql prompts (1,024 positions)."""
    sys.path.insert(0, str(REPO / "tests"))
    from transformers import GPT2Config, GPT2LMHeadModel

    import tiny_generative as tg
    from miniml.tasks import get_task

    base = work / "tiny-gpt2-base"
    base.mkdir()
    tg.build_tokenizer(base, tg._texts(), seq2seq=False)
    config = GPT2Config(
        vocab_size=400, n_embd=32, n_layer=2, n_head=4, n_positions=1024, bos_token_id=tg.BOS,
        eos_token_id=tg.EOS, pad_token_id=tg.PAD,
    )  # fmt: skip
    GPT2LMHeadModel(config).save_pretrained(str(base))
    settings = tg.settings_for("gpt2", base, max_input_tokens=960, max_target_tokens=32)
    task: Any = get_task("causal_lm")
    loaded = task.load_for_training(settings)
    folder = work / "tiny-gpt2"
    task.write_folder(
        folder, loaded, task.make_format(settings, loaded.tokenizer), settings, {"name": "tiny-gpt2"}
    )
    return folder


def latency_prompts(rows: list[dict[str, str]], count: int) -> list[str]:
    """Paraphrase groups' prompts first (so hits happen), then other prompts, up to ``count``."""
    groups: dict[str, list[str]] = {}
    for row in rows:
        groups.setdefault(row["group"], []).append(row["prompt"])
    paraphrased = [p for ps in groups.values() if len(ps) > 1 for p in ps]
    others = [ps[0] for ps in groups.values() if len(ps) == 1]
    return (paraphrased + others)[:count]


def timed(
    server: Server, name: str, prompts: list[str], max_new_tokens: int
) -> tuple[list[float], list[str]]:
    seconds, kinds = [], []
    with httpx.Client(timeout=60) as client:
        for prompt in prompts:
            body = {"inputs": [prompt], "max_new_tokens": max_new_tokens, "temperature": 0}
            start = time.perf_counter()
            r = client.post(f"{server.url}/v1/models/{name}/generate", json=body)
            seconds.append(time.perf_counter() - start)
            r.raise_for_status()
            kinds.append(r.headers.get("x-miniml-cache", "miss"))
    return seconds, kinds


def scrape(server: Server, histogram: str) -> tuple[float, float]:
    """(sum, count) of a histogram on the server's /metrics, over all its labels."""
    total = count = 0.0
    for line in httpx.get(f"{server.url}/metrics").text.splitlines():
        if line.startswith(histogram + "_sum"):
            total += float(line.rsplit(" ", 1)[1])
        elif line.startswith(histogram + "_count"):
            count += float(line.rsplit(" ", 1)[1])
    return total, count


def latency(model: Path, embedder: Path, prompts: list[str], args: argparse.Namespace) -> dict[str, float]:
    name = json.loads((model / "miniml.json").read_text())["name"]
    semantic = [
        f"cache.semantic={{embedder: '{embedder}', threshold: {args.threshold}, guard: true}}",
        "cache.backend=memory",
    ]
    for key in ("embed_pattern", "scope_pattern"):
        if getattr(args, key):
            semantic.append(f"cache.semantic.{key}={json.dumps(getattr(args, key))}")
    figures: dict[str, float] = {}
    for label, sets in (("without cache", ["cache.backend=none"]), ("with cache", semantic)):
        server = miniml_server([str(model)], free_port(), [*sets, "auth.enabled=false"])
        try:
            server.wait_ready()
            timed(server, name, prompts[:3], args.max_new_tokens)  # warm up (these then sit in the cache)
            seconds, kinds = timed(server, name, prompts, args.max_new_tokens)
            lookups = scrape(server, "miniml_semantic_lookup_duration_seconds")
        finally:
            server.stop()
        ms = np.array(seconds) * 1000
        hits = np.array([k == "semantic" for k in kinds])
        figures[f"{label}: mean ms"] = round(float(ms.mean()), 2)
        if hits.any():
            figures["semantic hits"] = int(hits.sum())
            figures["semantic hit p50 ms"] = round(float(np.percentile(ms[hits], 50)), 2)
            figures["semantic hit p99 ms"] = round(float(np.percentile(ms[hits], 99)), 2)
            figures["miss p50 ms (with cache)"] = round(float(np.percentile(ms[~hits], 50)), 2)
        if lookups[1]:
            figures["semantic lookup mean ms (embed + search, in the server)"] = round(
                1000 * lookups[0] / lookups[1], 2
            )
        print(f"-- {label}: {json.dumps(figures)}", flush=True)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--embedder", help="embedding model URI (default: the packaged MiniLM, imported)")
    parser.add_argument("--model", help="generative model URI for the latency part (default: tiny GPT-2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threshold", type=float, default=0.95, help="the latency part's threshold")
    parser.add_argument("--requests", type=int, default=300, help="prompts sent in the latency part")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument(
        "--others", type=int, help="prompts outside paraphrase groups to keep (default: all, ~6,000)"
    )
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument(
        "--vectors", type=Path, help="a .npy of the traffic's embeddings: read when it exists, else written"
    )
    parser.add_argument("--embed-pattern", help="cache.semantic.embed_pattern, e.g. 'Q: (.*)'")
    parser.add_argument("--scope-pattern", help="cache.semantic.scope_pattern, e.g. '^table: .*'")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args()
    exit_on_sigterm()
    print(json.dumps({"machine": machine()}, indent=2), flush=True)

    with tempfile.TemporaryDirectory(prefix="bench-semantic-") as tmp:
        work = Path(tmp)
        rows = traffic(args.seed, args.others)
        embedder = embedder_folder(args.embedder, work)
        started = time.perf_counter()
        cached = args.vectors is not None and args.vectors.is_file()
        split = split_all(rows, args)
        vectors = np.load(args.vectors) if cached else embed_all(embedder, [text for _, text in split])
        if args.vectors is not None and not cached:
            np.save(args.vectors, vectors)
        print(f"embedded {len(rows)} prompts in {time.perf_counter() - started:.1f} s", flush=True)
        table = sweep(rows, split, vectors)
        figures: dict[str, float] = {}
        if not args.skip_latency:
            from miniml.runtime import resolve

            model = resolve(args.model).path if args.model else tiny_generator(work)
            figures = latency(model, embedder, latency_prompts(rows, args.requests), args)
    print(json.dumps({"load_average_after": machine()["load_average_1m"]}))
    if args.out:
        args.out.write_text(json.dumps({"machine": machine(), "sweep": table, "latency": figures}, indent=2))


if __name__ == "__main__":
    main()
