"""int8 ONNX vs PyTorch fp32 for a reviews classifier (MiniLM), same machine, one run.

    python bench/optimize_compare.py models:/reviews@champion [--dataset sst5] [--threads 1] [--repeats 200]

Runs ``miniml optimize --onnx --int8`` in dry-run mode (nothing registered) through the same code path as the
command, then prints batch-1 latency p50/p99, batch-32 throughput, weight file size and test accuracy of both
models, the issue's targets (≥ 2.5× lower batch-1 latency, ≥ 3.5× smaller file, accuracy drop ≤ 1 point) and
the machine. Run it on a quiet machine: the figures are only as steady as the cores are idle.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from miniml.optimize import OptimizeConfig, optimize_model
from miniml.optimize.report import markdown

TARGETS = {"latency_p50_b1": 2.5, "size": 3.5}
MAX_DROP = 0.01


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "model", help="models:/NAME@ALIAS, models:/NAME/VERSION or a model folder (fp32 torch)"
    )
    parser.add_argument(
        "--dataset", default=None, help="prepared dataset for accuracy (default: the model's)"
    )
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads for both runtimes")
    parser.add_argument("--repeats", type=int, default=200, help="timed calls per batch size")
    parser.add_argument("--eval-limit", type=int, default=None, help="first N test rows only (quick look)")
    parser.add_argument("--json", type=Path, default=None, help="also write the full report here")
    args = parser.parse_args()
    cfg = OptimizeConfig(
        onnx=True,
        int8=True,
        dataset=args.dataset,
        dry_run=True,
        force=True,  # measure even if the gate would refuse; the verdict is printed below
        measure={
            "threads": args.threads,
            "repeats": args.repeats,
            "batch_sizes": [1, 32],
            "eval_limit": args.eval_limit,
        },
    )
    result = optimize_model(args.model, cfg)
    report = result.report
    print(markdown(report))
    ok = True
    for key, target in TARGETS.items():
        got = report["ratios"].get(key) or 0.0
        ok &= got >= target
        print(f"target {key}: {got:.2f}x (need >= {target}x) {'PASS' if got >= target else 'FAIL'}")
    drop = report["quality_drop"]
    ok &= drop <= MAX_DROP
    verdict = "PASS" if drop <= MAX_DROP else "FAIL"
    print(f"target accuracy drop: {drop * 100:+.2f} points (need <= {MAX_DROP * 100:.0f}) {verdict}")
    print("machine:", json.dumps(report["machine"]))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
