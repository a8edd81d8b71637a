"""`miniml optimize --onnx --int8` on a registered tiny BERT; then the real server answers with version 2
(int8 ONNX through onnxruntime) what it answers with version 1 (fp32 PyTorch), within int8 tolerance."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import numpy as np
import pytest

from serve_support import ServerProcess

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "optimize"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "registry"))
from optimize_support import LABELS, make_dataset, make_tiny_bert, make_tiny_bert_source, texts_for
from registry_support import seed_embedded_store, shared_blank_store

# int8 weights and activations move a tiny BERT's probabilities by a few 1e-3; 0.03 leaves room, and the
# labels (argmax) must not change on these clear-cut texts
TOLERANCE = 0.03
TEXTS = [
    "the plot was awful and the acting was boring",
    "a superb and moving film with brilliant acting",
    "it was an okay movie, plain and ordinary",
    "worst waste of a story",
    "lovely",
    *texts_for("pos", 3, 7),
    *texts_for("neg", 3, 8),
    *texts_for("neu", 3, 9),
]


def predict(server: ServerProcess) -> list[dict]:
    body = {"inputs": TEXTS, "top_k": len(LABELS)}
    r = httpx.post(f"{server.url}/v1/models/tinybert/predict", json=body, timeout=30)
    assert r.status_code == 200, r.text
    return list(r.json()["predictions"])


def scores(answer: dict) -> np.ndarray:
    by_label = {t["label"]: t["score"] for t in answer["top_k"]}
    return np.array([by_label[label] for label in LABELS])


def test_optimized_version_serves_the_same_answers(miniml_home: Path, tmp_path: Path) -> None:
    from miniml.cli import main
    from miniml.registry.store import register_model
    from miniml.runtime import resolve
    from miniml.tasks import load_predictor

    seed_embedded_store(miniml_home, shared_blank_store())
    dataset = make_dataset(rows=60)
    source = make_tiny_bert_source(tmp_path / "source")
    assert (
        register_model("tinybert", make_tiny_bert(tmp_path / "bert", dataset, source, fit=True)).version == 1
    )

    fast = ["--set", "measure.repeats=3", "--set", "measure.threads=1", "--set", "measure.batch_sizes=[1,8]"]
    # this test is about serving parity; the quality gate has its own integration test
    with pytest.raises(SystemExit) as done:
        main(["optimize", "models:/tinybert/1", "--onnx", "--int8", *fast, "--set", "max_quality_drop=0.1"])
    assert done.value.code == 0
    optimized = resolve("models:/tinybert/2").path
    from transformers import AutoModelForSequenceClassification

    with pytest.raises(OSError, match=r"model\.safetensors"):  # an ONNX version: transformers refuses, loudly
        AutoModelForSequenceClassification.from_pretrained(optimized)
    assert "holds an ONNX graph" in (optimized / "README.md").read_text()

    servers = [
        ServerProcess([f"models:/tinybert/{v}", "--set", "batching.threads=1"], tmp_path) for v in (1, 2)
    ]  # both start at once: start-up dominates this test
    try:
        parent, child = (s.wait_ready(timeout=180) for s in servers)
        parent_card = httpx.get(f"{parent.url}/v1/models", timeout=10).json()["models"]
        child_card = httpx.get(f"{child.url}/v1/models", timeout=10).json()["models"]
        assert [(m["version"], m["runtime"]) for m in parent_card] == [(1, "torch")]
        assert [(m["version"], m["runtime"]) for m in child_card] == [(2, "onnx")]

        torch_answers, int8_answers = predict(parent), predict(child)
        assert [a["label"] for a in int8_answers] == [a["label"] for a in torch_answers]
        diff = max(
            np.abs(scores(a) - scores(b)).max() for a, b in zip(torch_answers, int8_answers, strict=True)
        )
        assert 0 < diff <= TOLERANCE  # int8: close to the parent, not bit-identical
        # and the server runs exactly the registered ONNX model (onnxruntime, same preprocessing)
        # Dynamic int8 quantizes activations with one scale per batch tensor, so the reference must run the
        # batches the server runs: length-sorted chunks of 4 (the serve default for ONNX models).
        predictor = load_predictor(optimized, threads=1)
        order = sorted(range(len(TEXTS)), key=lambda i: len(TEXTS[i]))
        offline = np.zeros((len(TEXTS), len(predictor.info.labels)), dtype=np.float32)
        for start in range(0, len(order), 4):
            chunk = order[start : start + 4]
            offline[chunk] = predictor.predict_proba([TEXTS[i] for i in chunk])
        served = np.stack([scores(a) for a in int8_answers])
        np.testing.assert_allclose(served, offline, atol=1e-5)  # the API rounds scores to 6 decimals
    finally:
        codes = [server.terminate() for server in servers]
    assert codes == [0, 0], "both servers must shut down cleanly"
