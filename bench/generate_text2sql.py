"""text2sql on wikisql-mini: train the example (or take a trained model) and score the test split.

    python bench/generate_text2sql.py                      # prepare data, train examples/text2sql, score
    python bench/generate_text2sql.py --set epochs=2 --set model.warm_start.decoder_layers=3
    python bench/generate_text2sql.py --model models:/text2sql@champion   # score an existing model only

Prints normalised exact match and token F1 on the validation and test splits (100 questions each; choose
recipes on validation), with and without the model's saved constraint (the WikiSQL grammar of
examples/text2sql/train.yaml: same model, same prompts), training and generation wall time, training
throughput, a few sample predictions, the issue's targets (constrained exact match >= 0.25 on CPU, >= 0.50
on a GPU) and the machine. Nothing is registered; the trained model folder's path is printed, so
``--model FOLDER`` can score it again. Run it on a quiet machine (or a GPU): training is the slow part on
CPU.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
TARGET_EM = {"cpu": 0.25, "gpu": 0.50}


def machine() -> str:
    import torch

    from miniml.registry.environment import cpu_model

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"machine: {cpu_model()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, "
        f"GPU {gpu}, load average {load}"
    )


def prepare() -> str:
    from miniml.config import load_config
    from miniml.data.prepare import PrepareConfig, prepare

    config = load_config(PrepareConfig, REPO / "examples" / "text2sql" / "data.yaml")
    return str(prepare(config).path)


def train(overrides: list[str]) -> tuple[Path, float, int]:
    from miniml.train.config import load_train_config
    from miniml.train.run import fit

    config = load_train_config(
        REPO / "examples" / "text2sql" / "train.yaml", ["register_model=false", *overrides]
    )
    start = time.perf_counter()
    outcome = fit(config)
    seconds = time.perf_counter() - start
    examples = int(outcome.train_metrics.get("train_samples", 0) or 0)
    steps = max((h.get("step", 0) for h in outcome.history), default=0)
    print(f"trained in {seconds / 60:.1f} min ({steps} steps, batch {config.batch_size}); {examples} samples")
    print(f"model folder: {outcome.model_folder}")
    return outcome.model_folder, seconds, steps


def score(
    loaded: Any,
    dataset: str,
    limit: int | None,
    split: str,
    constrained: bool,
    samples: int = 5,
    beams: int = 1,
) -> dict[str, float]:
    from miniml.data.dataset import open_dataset
    from miniml.tasks.base import EvaluateOptions
    from miniml.tasks.generative_scoring import evaluate_generation

    frame = open_dataset(dataset).split(split)
    frame = frame.head(limit) if limit else frame
    start = time.perf_counter()
    options = EvaluateOptions(batch_size=32, samples=samples, constrained=constrained)
    params = loaded.predictor.default_params.model_copy(update={"num_beams": beams})
    metrics = ("exact_match", "token_f1", "rougeL")
    report = evaluate_generation(loaded.predictor, frame, metrics, loaded.info.task, options, params).report
    seconds = time.perf_counter() - start
    rate = report.count / seconds
    label = "with the constraint" if constrained else "without a constraint"
    label += f", {beams} beams" if beams > 1 else ""
    print(f"{split} split, {label}: {report.count} questions, generated in {seconds:.1f} s ({rate:.1f}/s)")
    for name, value in report.metrics.items():
        print(f"  {name}: {value:.4f}")
    for sample in report.samples:
        mark = "ok " if sample["exact_match"] else "bad"
        print(f"  [{mark}] {sample['prediction']!r}  (target {sample['target']!r})")
    return dict(report.metrics)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="score this model instead of training one")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="train config override")
    parser.add_argument("--limit", type=int, default=None, help="score the first N test rows only")
    parser.add_argument("--samples", type=int, default=5, help="test predictions printed")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--beams", type=int, default=1, help="also score beam search under the constraint")
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    print(machine())
    dataset = prepare()
    model = args.model or str(train(args.overrides)[0])
    from miniml.tasks import load_model

    loaded = load_model(model)
    if loaded.predictor.constraint is None:
        print("note: this model folder has no saved constraint; both rows are unconstrained")
    table = []
    for split in ("validation", "test"):  # choose recipes on validation, not on test
        runs = [(False, 1), (True, 1)] + ([(True, args.beams)] if args.beams > 1 else [])
        for constrained, beams in runs:
            metrics = score(loaded, dataset, args.limit, split, constrained, args.samples, beams)
            table.append((split, constrained, beams, metrics))
    print("\n| split | constraint | decoding | exact match | token F1 |\n|---|---|---|---:|---:|")
    for split, constrained, beams, metrics in table:
        em, f1 = metrics["exact_match"], metrics["token_f1"]
        decoding = f"beam search ({beams})" if beams > 1 else "greedy"
        constraint = "WikiSQL grammar" if constrained else "none"
        print(f"| {split} | {constraint} | {decoding} | {em:.2f} | {f1:.3f} |")
    import torch

    kind = "gpu" if torch.cuda.is_available() else "cpu"
    # the constrained decoding chosen on validation (greedy unless beams score higher there), scored on test
    scores = {(split, beams): m for split, constrained, beams, m in table if constrained}
    chosen = max(sorted({b for _, b in scores}), key=lambda b: (scores["validation", b]["exact_match"], -b))
    em = scores["test", chosen]["exact_match"]
    print(f"constrained decoding chosen on validation: {'greedy' if chosen == 1 else f'{chosen} beams'}")
    verdict = "PASS" if em >= TARGET_EM[kind] else "FAIL"
    print(f"target ({kind}): constrained exact_match >= {TARGET_EM[kind]} on test: {em:.4f} {verdict}")
    print(machine())
    return 0


if __name__ == "__main__":
    sys.exit(main())
