"""Offline throughput of one model on all cores vs one single-thread replica per core (no HTTP).

What ``batching.workers`` relies on: a small model on CPU may run faster as independent one-thread replicas
side by side than as one model whose kernels are split across all cores.

    python bench/offline_replicas.py models:/reviews/3            # int8 ONNX reviews model
    python bench/offline_replicas.py models:/reviews/1 --chunks 1 4 16

SST-5 test sentences (through the catalog), unsorted, in chunks of the given sizes; best of ``--rounds``.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Sequence

from serve_compare import sst5_sentences
from serve_load import machine

from miniml.runtime import resolve
from miniml.runtime.predictor import Predictor
from miniml.serve.aliases import usable_cores
from miniml.tasks import load_predictor


def throughput(predictors: Sequence[Predictor], texts: list[str], chunk: int, rounds: int) -> float:
    """Texts/s with each predictor on its own thread, working through its share of ``texts``."""

    def work(predictor: Predictor, share: list[str]) -> None:
        for i in range(0, len(share), chunk):
            predictor.predict_proba(share[i : i + chunk])

    best = 0.0
    for _ in range(rounds):
        threads = [
            threading.Thread(target=work, args=(p, texts[i :: len(predictors)]))
            for i, p in enumerate(predictors)
        ]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        best = max(best, len(texts) / (time.perf_counter() - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", help="models:/NAME@ALIAS, models:/NAME/VERSION or a model folder")
    parser.add_argument("--texts", type=int, default=1024)
    parser.add_argument("--chunks", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    folder = resolve(args.model).path
    cores = usable_cores()
    texts = sst5_sentences()[: args.texts]
    whole = [load_predictor(folder, threads=cores)]
    replicas = [load_predictor(folder, threads=1) for _ in range(cores)]
    print(f"model {folder}, {len(texts)} SST-5 sentences, {cores} cores")
    print("| chunk | one model, all cores (texts/s) | one-thread replica per core (texts/s) |")
    print("|---:|---:|---:|")
    for chunk in args.chunks:
        one = throughput(whole, texts, chunk, args.rounds)
        many = throughput(replicas, texts, chunk, args.rounds)
        print(f"| {chunk} | {one:.1f} | {many:.1f} |", flush=True)
    print(f"machine: {machine()}")


if __name__ == "__main__":
    main()
