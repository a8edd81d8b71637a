"""CPU cost of model monitoring in the server, by part: what each answer costs, what each verdict costs.

CPU time (``time.process_time``), which a loaded machine distorts less than requests/s:

- per answer: ``miniml.serve.monitoring.Monitoring.observe`` (what the predict path calls after each answer)
  with drift on or off and feedback (the memory prediction store) on or off;
- per verdict: ``DriftMonitor.report`` on a full window of real test sentences (what a ``/metrics`` scrape
  or ``GET /drift`` computes, off the event loop, at most once per ``min_interval_s``).

    python bench/monitor_overhead.py --model models:/nordic-langid@champion
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from miniml.runtime.loaded import LoadedModel


def observe_cost(model: LoadedModel, drift: bool, feedback: bool, n: int) -> float:
    """µs of CPU per ``observe`` of a one-input answer."""
    from miniml.serve.monitoring import Monitoring
    from miniml.serve.settings import ServeSettings

    settings = ServeSettings(
        models=[str(model.path)],
        monitor={"drift": {"enabled": drift}, "feedback": {"enabled": feedback}},
    )
    monitoring = Monitoring(settings)
    monitoring.prepare(model, "champion")
    output = model.predictor.predict_proba(["hej med dig"])[0]
    started = time.process_time()
    for i in range(n):
        monitoring.observe("m", "champion", model, f"r{i}", None, ["hej med dig"], [output], ["da"])
    return (time.process_time() - started) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="models:/nordic-langid@champion")
    parser.add_argument("--answers", type=int, default=50_000)
    parser.add_argument("--window", type=int, default=1000)
    args = parser.parse_args()

    from miniml.data.dataset import open_dataset
    from miniml.monitor.profile import find_profile, read_profile
    from miniml.monitor.window import DriftMonitor
    from miniml.tasks import load_model

    model = load_model(args.model, threads=1)
    print(json.dumps({"model": args.model, "load_average_1m": round(os.getloadavg()[0], 2)}, indent=2))
    print(f"\nper answer (Monitoring.observe, one input, {args.answers:,} answers, best of 3):")
    for drift, feedback in ((True, True), (False, True), (True, False), (False, False)):
        best = min(observe_cost(model, drift, feedback, args.answers) for _ in range(3))
        on = {True: "on ", False: "off"}
        print(f"  drift {on[drift]}, feedback {on[feedback]}: {best:6.2f} µs CPU")

    found = find_profile(model.path, model.info.name, model.version)
    if found is None:
        raise SystemExit(f"error: {args.model} has no reference profile; run `miniml monitor profile`")
    texts = open_dataset(model.info.dataset["name"]).split("test")["input"].astype(str).tolist()
    texts = texts[: args.window]
    profile = read_profile(found)
    monitor = DriftMonitor(profile, model=model.info.name, version=model.version, size=args.window)
    monitor.record(texts, list(model.predictor.predict_proba(texts)))
    times = []
    for _ in range(5):
        started = time.process_time()
        monitor.report(fresh=True)
        times.append((time.process_time() - started) * 1000)
    print(f"\nper verdict ({len(texts):,} inputs, no embedding signal): median {np.median(times):.1f} ms CPU")
    print(f"machine after the run: load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
