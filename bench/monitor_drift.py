"""Drift detection on nordic-langid traffic: false alarms on held-out data, detection of shifted traffic.

Runs the server's own code (``miniml.monitor.window.DriftMonitor`` with the serve defaults: 1,000-input
window, default thresholds) against the model's reference profile, offline, so the figures do not depend on
the machine's load. Windows:

- held-out: ``--windows`` windows of 1,000 sentences drawn (seeded) from the test split, never used by
  the profile (train: lengths, words, scripts; validation: labels, confidence) → false-alarm rate;
- shuffled: each word's letters in random order (same lengths and letters, no real words);
- other languages: only test sentences in languages other than da/nb/nn/sv (en, de, fr, fi, ...);
- short: one to three words cut from test sentences (UI strings, search queries);
- half shuffled: 50% shuffled, 50% normal.

    python bench/monitor_drift.py --model models:/nordic-langid@champion
    python bench/monitor_drift.py --model PATH --windows 20
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def load_test() -> tuple[list[str], list[str]]:
    from miniml.config import load_config
    from miniml.data.prepare import PrepareConfig, prepare

    test = prepare(load_config(PrepareConfig, REPO / "examples" / "nordic-langid" / "data.yaml")).split(
        "test"
    )
    other = test[~test["lang"].isin(["da", "nb", "nn", "sv"])]
    return test["input"].astype(str).tolist(), other["input"].astype(str).tolist()


def shuffled(text: str, rng: random.Random) -> str:
    return " ".join("".join(rng.sample(w, len(w))) for w in text.split(" "))


def short(text: str, rng: random.Random) -> str:
    words = text.split()
    n = rng.randint(1, min(3, len(words)))
    start = rng.randint(0, len(words) - n)
    return " ".join(words[start : start + n])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="models:/nordic-langid@champion")
    parser.add_argument("--windows", type=int, default=20)
    parser.add_argument("--window", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from miniml.monitor.profile import find_profile, read_profile
    from miniml.monitor.window import DriftMonitor
    from miniml.tasks import load_model

    resolved = load_model(args.model, threads=1)
    predictor = resolved.predictor
    found = find_profile(resolved.path, predictor.info.name, resolved.version)
    if found is None:
        raise SystemExit(
            f"error: {args.model} has no reference profile; run `miniml monitor profile {args.model}`"
        )
    profile = read_profile(found)
    test, other = load_test()
    rng = random.Random(args.seed)
    facts = {"model": args.model, "profile": str(found), "test_sentences": len(test)}
    print(json.dumps({**facts, "load_average_1m": round(os.getloadavg()[0], 2)}, indent=2))

    def verdict(texts: list[str]) -> tuple[bool, list[str], dict[str, float], float]:
        monitor = DriftMonitor(profile, model=profile.model, version=resolved.version, size=args.window)
        monitor.record(texts, list(predictor.predict_proba(texts)))
        started = time.perf_counter()
        report = monitor.report(fresh=True)
        ms = (time.perf_counter() - started) * 1000
        ratios = {k: s.value / s.threshold for k, s in report.signals.items()}
        return report.drift_detected, [k for k, s in report.signals.items() if s.drift_detected], ratios, ms

    alarms, worst, times = 0, {}, []
    for _ in range(args.windows):
        detected, _, ratios, ms = verdict(rng.sample(test, args.window))
        alarms += detected
        times.append(ms)
        for k, v in ratios.items():
            worst[k] = max(worst.get(k, 0.0), v)
    rate = f"false-alarm rate {alarms / args.windows:.0%}"
    print(f"\nheld-out windows: {alarms} false alarms in {args.windows} windows of {args.window} ({rate})")
    print(f"verdict time: median {np.median(times):.1f} ms per window")
    print("largest statistic / threshold per signal over those windows (1.0 = alarm):")
    print("  " + ", ".join(f"{k} {v:.2f}" for k, v in worst.items()))

    scenarios = {
        "shuffled letters": [shuffled(t, rng) for t in rng.sample(test, args.window)],
        "other languages only": [rng.choice(other) for _ in range(args.window)],
        "short (1-3 words)": [short(t, rng) for t in rng.sample(test, args.window)],
        "half shuffled": [
            shuffled(t, rng) if i % 2 else t for i, t in enumerate(rng.sample(test, args.window))
        ],
    }
    print(f"\n| traffic (window of {args.window}) | drift detected | signals over threshold |")
    print("|---|---|---|")
    for name, texts in scenarios.items():
        detected, fired, ratios, _ = verdict(texts)
        detail = ", ".join(f"{k} ({ratios[k]:.1f}x)" for k in fired) or "-"
        print(f"| {name} | {'yes' if detected else 'no'} | {detail} |")
    print(f"\nmachine after the run: load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
