"""nordic-langid on sources it never trained on: hold out whole sources, train without them, score on them.

    python bench/langid_heldout.py [--data examples/nordic-langid/data.yaml]
        [--train examples/nordic-langid/train.yaml] [--folds "flores,tatoeba,dkhate,npk;ntrex,xsid,..."]
        [--per-group 500] [--set TRAIN_KEY=VALUE ...] [--data-set DATA_KEY=VALUE ...] [--model MODEL_URI]
        [--fold-models "FOLDER1;FOLDER2"] [--detectors lingua,pycld2,langid] [--json OUT]

A source's family is the first part of its ``source`` extra (``flores`` for ``flores/{code}``). For each
fold (``;`` between folds, ``,`` between families) the data step prepares two datasets from the data
config: the config without that fold's sources (what the fold's model trains on), and those sources alone,
all in ``test`` (what it is scored on). The held-out set keeps at most ``--per-group`` rows of each
``source`` value (e.g. ``flores/nn``; seeded), minus any text that is also in the fold's training data.
The train config is trained on the first (no registry; ``--set`` overrides its keys) and the fold's model
is scored on the second. With ``--model`` nothing is trained: that one model is scored on every fold's
held-out set (e.g. a champion trained before these sources existed, for "before" figures). With
``--fold-models`` (one per fold, ``;`` between them) each fold is scored with the model an earlier run of
this script trained for it (the folder its ``fold N: trained in ...`` line printed), e.g. folds trained
side by side in separate runs, then scored together for the pooled figures.

Prints per fold, then over all folds together (each row scored by the model that did not see its source):
F1 per label and macro-F1 for miniml and each detector, the gap of miniml to the best detector per label,
F1 per label on each held-out source family, and accuracy by length (1-3, 4-8, 9-20, 21+ words) overall
and per Nordic label. Detector answers are cached by text (``MINIML_HOME/bench/langid-detectors.json``):
they never change. Last line: the machine.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from langid_compare import CLASSES, DETECTORS, Detector, machine, miniml_detector

NORDIC = ["da", "nb", "nn", "sv"]
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "nordic-langid"


# ---------------------------------------------------------------- datasets through the data step
def family(source: Any) -> str:
    """``flores`` for a source whose ``source`` extra is ``flores/{code}``."""
    template = source.extras.get("source")
    if not isinstance(template, str):
        raise SystemExit(f"error: every source needs a `source` extra to be held out ({source.describe(0)})")
    return template.split("/")[0]


def fold_datasets(config: Any, held: set[str], fold_id: str) -> tuple[Any, Any]:
    """(training dataset without the held-out families, held-out dataset: their sources, all in test)."""
    from miniml.data.prepare import prepare

    keep = [s for s in config.sources if family(s) not in held]
    out = [
        s.model_copy(update={"split": "test", "max_rows": None}) for s in config.sources if family(s) in held
    ]
    unknown = held - {family(s) for s in config.sources}
    if unknown:
        raise SystemExit(f"error: no source of family {sorted(unknown)} in the data config")
    train = prepare(config.model_copy(update={"name": f"{config.name}-without-{fold_id}", "sources": keep}))
    split = config.split.model_copy(update={"max_per_class": None, "balance": False})
    heldout = prepare(
        config.model_copy(update={"name": f"{config.name}-heldout-{fold_id}", "sources": out, "split": split})
    )
    return train, heldout


def heldout_rows(train: Any, heldout: Any, per_group: int, seed: int) -> pd.DataFrame:
    """At most ``per_group`` rows per ``source`` value; texts the training data also holds are removed."""
    seen = set().union(*(set(train.split(s)["input"]) for s in ("train", "validation", "test")))
    rows = heldout.split("test")
    rows = rows[~rows["input"].isin(seen)]
    shuffled = rows.sample(frac=1.0, random_state=seed)
    return shuffled.groupby("source").head(per_group).sort_index().reset_index(drop=True)


# ---------------------------------------------------------------- training one fold
def train_fold(train_yaml: Path, dataset: Any, overrides: list[str]) -> tuple[Path, float]:
    """Train on the fold's dataset (no MLflow, no registry); the model folder and wall seconds."""
    from miniml.train import fit
    from miniml.train.config import load_train_config

    sets = [*overrides, f"dataset={dataset.path}", "register_model=false", "model_name=nordic-langid-heldout"]
    config = load_train_config(train_yaml, sets)
    start = time.perf_counter()
    outcome = fit(config)
    return outcome.model_folder, time.perf_counter() - start


# ---------------------------------------------------------------- detectors, cached by text
class DetectorCache:
    """``{detector: {sha1(text): label}}`` in one JSON file: detectors are deterministic and slow."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, dict[str, str]] = json.loads(path.read_text()) if path.is_file() else {}

    def labels(self, name: str, detect: Detector, texts: list[str]) -> list[str]:
        known = self.data.setdefault(name, {})
        keys = [hashlib.sha1(t.encode()).hexdigest() for t in texts]
        missing = sorted({k: t for k, t in zip(keys, texts, strict=True) if k not in known}.items())
        if missing:
            answers = detect([t for _, t in missing])
            known.update({k: a for (k, _), a in zip(missing, answers, strict=True)})
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.data))
            tmp.replace(self.path)
        return [known[k] for k in keys]


# ---------------------------------------------------------------- scoring
def f1_by_label(y_true: pd.Series, y_pred: pd.Series, labels: list[str]) -> dict[str, float]:
    scores = f1_score(y_true.tolist(), y_pred.tolist(), labels=labels, average=None, zero_division=0)
    return {c: float(s) for c, s in zip(labels, scores, strict=True)}


def length_accuracy(rows: pd.DataFrame, pred: pd.Series) -> dict[str, float]:
    """Accuracy per word-count bucket, and on 4-8 words per Nordic label (``4-8/da``...)."""
    from miniml.metrics.classification import LENGTH_BUCKETS, word_counts

    words = pd.Series(word_counts(rows["input"].tolist()), index=rows.index)
    right = pred == rows["target"]
    out: dict[str, float] = {}
    for name, low, high in LENGTH_BUCKETS:
        inside = (words >= low) & (words <= (high or 10**9))
        out[name] = float(right[inside].mean()) if inside.any() else float("nan")
        if name == "4-8":
            for label in NORDIC:
                mask = inside & (rows["target"] == label)
                out[f"4-8/{label}"] = float(right[mask].mean()) if mask.any() else float("nan")
    return out


def score(rows: pd.DataFrame, pred: pd.Series) -> dict[str, Any]:
    """Pooled F1 per label + macro, per-family F1 over the labels each family has, length buckets."""
    pooled = f1_by_label(rows["target"], pred, CLASSES)
    result: dict[str, Any] = {"f1": pooled, "macro_f1": float(np.mean(list(pooled.values())))}
    result["accuracy"] = float((pred == rows["target"]).mean())
    fams = rows["source"].str.split("/").str[0]
    result["families"] = {}
    for fam in sorted(fams.unique()):
        mask = fams == fam
        present = [c for c in CLASSES if (rows["target"][mask] == c).any()]
        result["families"][fam] = {
            "f1": f1_by_label(rows["target"][mask], pred[mask], present),
            "accuracy": float((pred[mask] == rows["target"][mask]).mean()),
            "rows": int(mask.sum()),
        }
    result["by_length"] = length_accuracy(rows, pred)
    return result


# ---------------------------------------------------------------- report
def fmt(value: float) -> str:
    return "-" if value != value else f"{value:.3f}"  # NaN → "-"


def markdown(title: str, rows: pd.DataFrame, results: dict[str, dict[str, Any]]) -> str:
    names = list(results)
    lines = [f"### {title}: {len(rows)} held-out rows", ""]
    lines += ["| detector | " + " | ".join(f"F1 {c}" for c in CLASSES) + " | macro-F1 | accuracy |"]
    lines += ["|---" * (len(CLASSES) + 3) + "|"]
    for name in names:
        r = results[name]
        cells = [fmt(r["f1"][c]) for c in CLASSES] + [f"**{r['macro_f1']:.4f}**", fmt(r["accuracy"])]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    others = [n for n in names if n != "miniml"]
    if "miniml" in results and others:
        gaps = [results["miniml"]["f1"][c] - max(results[n]["f1"][c] for n in others) for c in CLASSES]
        lines.append("| miniml − best detector | " + " | ".join(f"{g:+.3f}" for g in gaps) + " | | |")
    lines += ["", "F1 per label on each held-out source family (labels it has; accuracy last):", ""]
    lines += ["| source | rows | detector | " + " | ".join(CLASSES) + " | accuracy |"]
    lines += ["|---" * (len(CLASSES) + 4) + "|"]
    for fam, first in results[names[0]]["families"].items():
        for name in names:
            got = results[name]["families"][fam]
            cells = [fmt(got["f1"].get(c, float("nan"))) for c in CLASSES] + [fmt(got["accuracy"])]
            lines.append(f"| {fam} | {first['rows']} | {name} | " + " | ".join(cells) + " |")
    keys = ["1-3", "4-8", "9-20", "21+"] + [f"4-8/{c}" for c in NORDIC]
    words = pd.Series([len(t.split()) for t in rows["input"]])
    counts = [int(((words >= lo) & (words <= hi)).sum()) for lo, hi in ((0, 3), (4, 8), (9, 20), (21, 10**9))]
    lines += ["", "Accuracy by length (words; rows: " + ", ".join(map(str, counts)) + "):", ""]
    lines += ["| detector | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for name in names:
        lines.append(f"| {name} | " + " | ".join(fmt(results[name]["by_length"][k]) for k in keys) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------- main
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=EXAMPLE / "data.yaml")
    parser.add_argument("--train", type=Path, default=EXAMPLE / "train.yaml")
    parser.add_argument("--folds", default="flores,tatoeba,dkhate,npk;ntrex,xsid,danplus,superlim,lia")
    parser.add_argument("--per-group", type=int, default=500, help="held-out rows per source value, at most")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", dest="sets", action="append", default=[], help="train config KEY=VALUE")
    parser.add_argument("--data-set", dest="data_sets", action="append", default=[], help="data KEY=VALUE")
    parser.add_argument("--model", default=None, help="score this model on every fold instead of training")
    parser.add_argument("--fold-models", default=None, help="';'-separated: a trained model per fold")
    parser.add_argument("--detectors", default="lingua,pycld2,langid", help="comma-separated; '' for none")
    parser.add_argument("--cache", type=Path, default=None, help="detector answers (default: MINIML_HOME)")
    parser.add_argument("--json", type=Path, default=None, help="also write every figure here")
    args = parser.parse_args()

    from miniml import paths
    from miniml.config import load_config
    from miniml.data.prepare import PrepareConfig

    config = load_config(PrepareConfig, args.data, args.data_sets, base_dir_key="base_dir")
    cache = DetectorCache(args.cache or paths.home() / "bench" / "langid-detectors.json")
    detectors = {n: DETECTORS[n]() for n in filter(None, args.detectors.split(","))}
    folds = [set(f.split(",")) for f in args.folds.split(";")]
    fold_models = args.fold_models.split(";") if args.fold_models else None
    if fold_models is not None and (len(fold_models) != len(folds) or args.model):
        raise SystemExit("error: --fold-models needs one model per fold (';' between them) and no --model")
    report: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}, "folds": []}
    every: list[pd.DataFrame] = []
    for i, held in enumerate(folds, start=1):
        train, heldout = fold_datasets(config, held, "-".join(sorted(held)))
        rows = heldout_rows(train, heldout, args.per_group, args.seed)
        print(
            f"fold {i}: held out {', '.join(sorted(held))}; trains on {train.name}/{train.fingerprint} "
            f"({train.manifest.counts.get('train', 0)} rows), scored on {len(rows)} rows",
            flush=True,
        )
        seconds = None
        if args.model or fold_models:
            model = args.model or (fold_models[i - 1] if fold_models else "")
        else:
            folder, seconds = train_fold(args.train, train, args.sets)
            model = str(folder)
            print(f"fold {i}: trained in {seconds:.0f} s → {folder}", flush=True)
        detect, _ = miniml_detector(model, 512)
        preds = {"miniml": detect(rows["input"].tolist())}
        for name, detector in detectors.items():
            preds[name] = cache.labels(name, detector, rows["input"].tolist())
        for name, labels in preds.items():
            rows[f"pred_{name}"] = labels
        results = {n: score(rows, rows[f"pred_{n}"]) for n in preds}
        title = f"Fold {i}, held out: {', '.join(sorted(held))}"
        print(markdown(title, rows, results) + "\n", flush=True)
        report["folds"].append({"held_out": sorted(held), "train_seconds": seconds, "results": results})
        every.append(rows)
    if len(every) > 1:
        rows = pd.concat(every, ignore_index=True)
        names = [c.removeprefix("pred_") for c in rows.columns if c.startswith("pred_")]
        results = {n: score(rows, rows[f"pred_{n}"]) for n in names}
        print(markdown("All folds", rows, results), flush=True)
        report["all"] = results
    print(machine())
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
