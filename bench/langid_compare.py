"""nordic-langid: a miniml model vs the offline detectors a user would otherwise pick, on the same split.

    python bench/langid_compare.py models:/nordic-langid@champion [--dataset nordic-langid] [--split test]
        [--detectors lingua,pycld2,langid] [--batch-size 256] [--locale-dir /usr/share/locale] [--json OUT]

Prints, for miniml and each detector: F1 per class and macro-F1 over all rows, microseconds per sentence on
ONE core (miniml batched, featurization included; lingua through its batch API on one rayon thread; pycld2
and langid one call per sentence, which is all they offer), then macro-F1 per source family (``ud``,
``nordicdsl``, ``ntrex``, ...: the ``source`` column up to its first ``/``; over the labels each has). Then
two held-out probes from the machine's gettext catalogs (software messages, a domain none of the training data
comes from): accuracy on da / sv / nb / nn messages, and how often messages in languages the model never
saw in training come out as ``other``. The probe depends on which Debian packages are installed; the script
prints how many messages and languages it used. Last line: the machine.

Detector outputs are mapped to the five classes: da, sv, nb, nn as themselves, ``no`` (generic Norwegian,
what langid and CLD2 often answer) counts as nb, anything else (or no answer) is ``other``.
"""

from __future__ import annotations

import argparse
import gettext
import json
import os
import random
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score

CLASSES = ["da", "nb", "nn", "sv", "other"]
SCANDINAVIAN = {"da", "sv", "nb", "nn"}
# Codes that are a Scandinavian language (or a spelling of one) in gettext catalogs: never "unseen".
NOT_UNSEEN = SCANDINAVIAN | {"no", "nb_NO", "nn_NO", "da_DK", "sv_SE"}
Detector = Callable[[Sequence[str]], list[str]]


# ---------------------------------------------------------------- detectors
def to_class(code: str | None) -> str:
    """A detector's ISO 639-1 answer → one of the five classes (``no`` counts as Bokmål)."""
    code = (code or "").lower()
    if code == "no":
        return "nb"
    return code if code in SCANDINAVIAN else "other"


def lingua_detector() -> Detector:
    os.environ.setdefault("RAYON_NUM_THREADS", "1")  # its batch API on one core, like the others
    from lingua import LanguageDetectorBuilder

    detector = LanguageDetectorBuilder.from_all_languages().with_preloaded_language_models().build()

    def detect(texts: Sequence[str]) -> list[str]:
        found = detector.detect_languages_in_parallel_of(list(texts))
        return [to_class(lang.iso_code_639_1.name if lang is not None else None) for lang in found]

    return detect


def pycld2_detector() -> Detector:
    import pycld2

    def one(text: str) -> str:
        try:
            _, _, details = pycld2.detect(text)
        except pycld2.error:  # e.g. invalid UTF-8 in the input: no answer
            return "other"
        code = details[0][1] if details else "un"
        return "other" if code == "un" else to_class(code)

    return lambda texts: [one(t) for t in texts]


def langid_detector() -> Detector:
    import langid

    return lambda texts: [to_class(langid.classify(t)[0]) for t in texts]


DETECTORS: dict[str, Callable[[], Detector]] = {
    "lingua": lingua_detector,
    "pycld2": pycld2_detector,
    "langid": langid_detector,
}


def miniml_detector(model: str, batch_size: int) -> tuple[Detector, str]:
    """The model behind ``model`` (URI or folder) as a detector, batched, on one thread."""
    from miniml.runtime import resolve
    from miniml.tasks import load_predictor

    resolved = resolve(model)
    predictor = load_predictor(resolved.path, threads=1, device="cpu")
    labels = np.array(predictor.info.labels)

    def detect(texts: Sequence[str]) -> list[str]:
        out: list[str] = []
        for start in range(0, len(texts), batch_size):
            probs = predictor.predict_proba(texts[start : start + batch_size])
            out += labels[probs.argmax(axis=1)].tolist()
        return out

    dataset = predictor.info.dataset
    return detect, f"{dataset.get('name')}/{dataset.get('fingerprint')}" if dataset else ""


# ---------------------------------------------------------------- held-out probe: gettext catalogs
_MARKUP = re.compile(r"%[-#0-9.]*[a-zA-Z]|\{[^}]*\}|\$\{?\w+\}?|<[^>]+>|&\w+;|_(?=\w)|\\[nt]")
_SKIP_DOMAINS = re.compile(r"^(iso_|xkeyboard|tzdata)")  # names of countries/languages/layouts: not prose


def catalog_messages(lang_dir: Path, min_words: int, limit: int, seed: int) -> list[str]:
    """Translated messages of one language (``LC_MESSAGES/*.mo``), markup removed, shuffled, capped."""
    found: set[str] = set()
    for mo in sorted(lang_dir.glob("LC_MESSAGES/*.mo")):
        if _SKIP_DOMAINS.match(mo.name):
            continue
        try:
            with mo.open("rb") as fh:
                catalog: dict[Any, Any] = gettext.GNUTranslations(fh)._catalog  # type: ignore[attr-defined]
        except Exception:  # a malformed third-party catalog (bad header, plural forms): skip it
            continue
        for key, text in catalog.items():
            source = key[0] if isinstance(key, tuple) else key
            if not source or not isinstance(text, str) or text.strip() == str(source).strip():
                continue  # the header, or an untranslated message
            clean = " ".join(_MARKUP.sub(" ", text).split())
            if len(clean.split()) >= min_words and len(clean) <= 300:
                found.add(clean)
    messages = sorted(found)
    random.Random(seed).shuffle(messages)
    return messages[:limit]


def locale_probe(root: Path, trained_langs: set[str], per_lang: int = 300) -> pd.DataFrame:
    """Rows (input, lang, kind): kind ``scandinavian`` for da/sv/nb/nn, ``unseen`` for untrained languages."""
    rows = []
    for lang_dir in sorted(p for p in root.iterdir() if re.fullmatch(r"[a-z]{2,3}", p.name)):
        lang = lang_dir.name
        if lang in SCANDINAVIAN:
            kind = "scandinavian"
        elif lang in NOT_UNSEEN or lang in trained_langs:
            continue
        else:
            kind = "unseen"
        messages = catalog_messages(lang_dir, min_words=4, limit=per_lang, seed=0)
        if len(messages) >= 30:  # too few messages make a noisy rate
            rows += [(m, lang, kind) for m in messages]
    return pd.DataFrame(rows, columns=["input", "lang", "kind"])


# ---------------------------------------------------------------- measuring
def timed_run(detect: Detector, texts: list[str]) -> tuple[list[str], float, float]:
    """Labels, wall µs/sentence and CPU µs/sentence (CPU time is steadier on a busy machine)."""
    detect(texts[:32])  # warm-up: lazy loading, caches
    wall, cpu = time.perf_counter(), time.process_time()
    labels = detect(texts)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return labels, wall / len(texts) * 1e6, cpu / len(texts) * 1e6


def f1_row(y_true: Sequence[str], y_pred: Sequence[str]) -> dict[str, float]:
    scores = f1_score(list(y_true), list(y_pred), labels=CLASSES, average=None, zero_division=0)
    row = {c: float(s) for c, s in zip(CLASSES, scores, strict=True)}
    row["macro_f1"] = float(np.mean(scores))
    return row


def measure(name: str, detect: Detector, test: pd.DataFrame, probe: pd.DataFrame) -> dict[str, Any]:
    labels, wall_us, cpu_us = timed_run(detect, test["input"].tolist())
    pred = pd.Series(labels, index=test.index)
    result: dict[str, Any] = {"name": name, "all": f1_row(test["target"], pred)}
    result |= {"us_per_sentence": wall_us, "cpu_us_per_sentence": cpu_us}
    result["by_length"] = length_accuracy(test, pred)
    if "source" in test:
        result["groups"] = []
        for group, mask in source_groups(test["source"]).items():
            present = [c for c in CLASSES if (test["target"][mask] == c).any()]
            row = f1_row(test["target"][mask], pred[mask])
            result[group] = row | {"macro_f1": float(np.mean([row[c] for c in present]))}
            result["groups"].append(group)
    if len(probe):
        got = pd.Series(detect(probe["input"].tolist()), index=probe.index)
        scand = probe["kind"] == "scandinavian"
        hit = got[scand] == probe["lang"][scand]
        result["probe_scandinavian_acc"] = hit.groupby(probe["lang"][scand]).mean().to_dict()
        unseen = got[~scand] == "other"
        by_lang = unseen.groupby(probe["lang"][~scand]).mean()
        result["probe_unseen_other_rate"] = float(by_lang.mean()) if len(by_lang) else float("nan")
        result["probe_unseen_worst"] = by_lang.sort_values().head(5).round(3).to_dict()
    return result


def length_accuracy(test: pd.DataFrame, pred: pd.Series) -> dict[str, float]:
    """Accuracy per word-count bucket (as in miniml's evaluation report), and 4-8 words per Nordic label."""
    from miniml.metrics.classification import LENGTH_BUCKETS, word_counts

    words = pd.Series(word_counts(test["input"].tolist()), index=test.index)
    right = pred == test["target"]
    out: dict[str, float] = {}
    for name, low, high in LENGTH_BUCKETS:
        inside = (words >= low) & (words <= (high or 10**9))
        out[name] = float(right[inside].mean()) if inside.any() else float("nan")
    inside = (words >= 4) & (words <= 8)
    for label in ("da", "nb", "nn", "sv"):
        mask = inside & (test["target"] == label)
        out[f"4-8/{label}"] = float(right[mask].mean()) if mask.any() else float("nan")
    return out


def source_groups(source: pd.Series) -> dict[str, pd.Series]:
    """Row masks per source family: the part of ``source`` before the first ``/`` (``ud``, ``ntrex``, ...)."""
    family = source.astype(str).str.split("/").str[0]
    return {name: family == name for name in sorted(family.unique())}


# ---------------------------------------------------------------- report
def markdown(results: list[dict[str, Any]], probe: pd.DataFrame) -> str:
    head = "| detector | " + " | ".join(f"F1 {c}" for c in CLASSES) + " | macro-F1 |"
    head += " µs/sent (wall) | µs/sent (CPU) |"
    lines = [head, "|" + "---|" * (len(CLASSES) + 4)]
    for r in results:
        cells = [f"{r['all'][c]:.3f}" for c in CLASSES] + [f"**{r['all']['macro_f1']:.4f}**"]
        cells += [f"{r['us_per_sentence']:.1f}", f"{r['cpu_us_per_sentence']:.1f}"]
        lines.append(f"| {r['name']} | " + " | ".join(cells) + " |")
    groups = results[0].get("groups", []) if results else []
    if groups:
        lines += ["", "macro-F1 over the labels each source family has, same rows:", ""]
        lines += ["| detector | " + " | ".join(groups) + " |", "|---" * (len(groups) + 1) + "|"]
        for r in results:
            lines.append(f"| {r['name']} | " + " | ".join(f"{r[g]['macro_f1']:.4f}" for g in groups) + " |")
    keys = list(results[0]["by_length"]) if results else []
    lines += ["", "Accuracy by length (words), same rows; then 4-8 words per Nordic label:", ""]
    lines += ["| detector | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for r in results:
        lines.append(f"| {r['name']} | " + " | ".join(f"{r['by_length'][k]:.3f}" for k in keys) + " |")
    if len(probe):
        n_unseen = probe.loc[probe["kind"] == "unseen", "lang"].nunique()
        lines += [
            "",
            f"Held-out probe (gettext messages): {int((probe['kind'] == 'scandinavian').sum())} da/sv/nb/nn "
            f"messages; {int((probe['kind'] == 'unseen').sum())} messages in {n_unseen} languages "
            "absent from the training data.",
            "",
            "| detector | acc da | acc sv | acc nb | acc nn | unseen → other | worst unseen languages |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in results:
            acc = r.get("probe_scandinavian_acc", {})
            worst = ", ".join(f"{k} {v:.2f}" for k, v in r.get("probe_unseen_worst", {}).items())
            cells = [f"{acc.get(c, float('nan')):.3f}" for c in ("da", "sv", "nb", "nn")]
            lines.append(
                f"| {r['name']} | " + " | ".join(cells) + f" | {r['probe_unseen_other_rate']:.3f} | {worst} |"
            )
    return "\n".join(lines)


def machine() -> str:
    import platform

    import torch

    from miniml.registry.environment import cpu_model

    return (
        f"machine: {cpu_model()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, "
        f"python {platform.python_version()}, torch {torch.__version__}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="models:/NAME@ALIAS, models:/NAME/VERSION or a model folder")
    parser.add_argument("--dataset", default=None, help="prepared dataset (default: the model's own)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--detectors", default="lingua,pycld2,langid", help="comma-separated; '' for none")
    parser.add_argument("--batch-size", type=int, default=256, help="miniml batch size")
    parser.add_argument("--limit", type=int, default=None, help="first N rows of the split (quick look)")
    parser.add_argument("--locale-dir", type=Path, default=Path("/usr/share/locale"))
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()

    from miniml.data.dataset import open_dataset

    detect, model_dataset = miniml_detector(args.model, args.batch_size)
    dataset = open_dataset(args.dataset or model_dataset)
    test = dataset.split(args.split)
    if args.limit:
        test = test.head(args.limit)
    trained = set(dataset.split("train")["lang"]) if "lang" in test else set()
    probe = locale_probe(args.locale_dir, trained) if args.locale_dir.is_dir() else pd.DataFrame()
    print(f"dataset {dataset.name}/{dataset.fingerprint} split {args.split}: {len(test)} rows", flush=True)

    results = [measure("miniml", detect, test, probe)]
    for name in filter(None, args.detectors.split(",")):
        if name not in DETECTORS:
            parser.error(f"unknown detector {name!r}; known: {', '.join(DETECTORS)}")
        try:
            detector = DETECTORS[name]()
        except ImportError as err:  # the bench extra is not installed
            print(f"skipping {name}: {err} (pip install 'miniml[bench]')", file=sys.stderr)
            continue
        results.append(measure(name, detector, test, probe))
        print(f"measured {name}", file=sys.stderr, flush=True)

    print(markdown(results, probe))
    print(machine())
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
