"""Task ``embedding`` end to end on a tiny local BERT: import the untrained encoder (the baseline), train it
on pairs with in-batch negatives, evaluate, predict; a classifier's encoder imported as an embedder; bad input
as one-line errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "registry"))
from registry_support import seed_embedded_store, shared_blank_store

from embedding_support import make_tiny_encoder, pairs_dataset
from miniml.cli import main
from miniml.registry import store
from miniml.tasks import load_model


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_encoder(tmp_path_factory.mktemp("tiny_encoder"))


@pytest.fixture
def registry(miniml_home: Path) -> Path:
    return seed_embedded_store(miniml_home, shared_blank_store())


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    out = capsys.readouterr()
    return int(exit_info.value.code or 0), out.out, out.err


def last_line(err: str) -> str:
    return err.strip().splitlines()[-1]


def test_import_train_evaluate_predict(
    registry: Path, tiny_encoder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = pairs_dataset(negatives=True)
    code, out, err = cli(
        capsys, "models", "import", str(tiny_encoder), "--name", "pairs", "--dataset", str(data.path),
        "--set", "max_tokens=16",
    )  # fmt: skip
    assert code == 0, err
    assert "imported pairs: version 1" in out
    baseline = store.get_version("pairs", 1).info
    assert baseline is not None and baseline.task == "embedding" and baseline.embedding["dimensions"] == 32
    assert set(baseline.metrics) == {"recall_at_1", "recall_at_10", "mrr"}

    config = tmp_path / "train.yaml"
    config.write_text(
        f"model_name: pairs\ndataset: {data.path}\ntask: embedding\n"
        f"model: {{name_or_path: {tiny_encoder}, max_tokens: 16}}\n"
        "epochs: 20\nbatch_size: 8\nlearning_rate: 3.0e-3\nthreads: 1\nseed: 1\nlogging_steps: 5\n"
    )
    code, out, err = cli(capsys, "train", str(config))
    assert code == 0, err
    trained = store.get_version("pairs", 2).info
    assert trained is not None
    # in-batch negatives taught the 24 associations a random encoder does not know
    assert trained.metrics["recall_at_1"] >= 0.8 > baseline.metrics["recall_at_1"]
    assert trained.metrics["mrr"] > baseline.metrics["mrr"]

    code, out, err = cli(capsys, "evaluate", "models:/pairs/2", str(data.path))
    assert code == 0, err
    assert json.loads(out) == pytest.approx(trained.metrics)

    src, dest = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text('{"id": 7, "text": "what is src3"}\n{"text": "the tgt3"}\n{"text": "the tgt9"}\n')
    code, _, err = cli(capsys, "predict", "models:/pairs/2", "--input", str(src), "--output", str(dest))
    assert code == 0, err
    lines = [json.loads(line) for line in dest.read_text().splitlines()]
    assert lines[0]["id"] == 7 and [x["tokens"] for x in lines] == [5, 4, 4]
    vectors = np.array([x["embedding"] for x in lines])
    assert vectors.shape == (3, 32) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]  # its own target is closer

    src.write_text('{"text": "what is src3"}\n{"text": "   "}\n')
    code, _, err = cli(capsys, "predict", "models:/pairs/2", "--input", str(src), "--output", str(dest))
    assert code == 2 and last_line(err).startswith("error: input 1 is empty")
    src.write_text(json.dumps({"text": " ".join(["kerr"] * 20)}) + "\n")
    code, _, err = cli(capsys, "predict", "models:/pairs/2", "--input", str(src), "--output", str(dest))
    assert code == 2 and "has 22 tokens; model pairs reads at most 16" in last_line(err)


def test_a_classifiers_encoder_becomes_an_embedder(
    registry: Path, tiny_encoder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    from miniml.modelfolder import ModelInfo
    from miniml.models.folder import save_model_folder
    from miniml.models.pretrained import PretrainedSpec, pretrained

    spec = PretrainedSpec(name_or_path=str(tiny_encoder), pooling="mean", max_length=16)
    featurizer = spec.make_featurizer([])
    classifier = pretrained(spec, ["neg", "pos"], featurizer).eval()
    folder = tmp_path / "classifier"
    info = ModelInfo(name="clf", task="classification", architecture="hf_mean_pool", labels=["neg", "pos"],
                     preprocessing=featurizer.preprocessing())  # fmt: skip
    save_model_folder(folder, classifier, featurizer, spec, info)

    code, _, err = cli(
        capsys, "models", "import", str(folder), "--name", "clf-encoder", "--set", "max_tokens=16"
    )
    assert code == 0, err
    embedder = load_model("models:/clf-encoder/1")
    texts = ["what is src1", "the tgt2 of kerr"]
    with torch.inference_mode():
        batch = featurizer.batch(texts)
        hidden = classifier.encoder(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        expected = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()
    assert np.allclose(embedder.predictor.embed(texts), expected, atol=1e-5)


def test_import_refuses_what_it_cannot_make(
    registry: Path, tiny_encoder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = cli(
        capsys, "models", "import", str(tiny_encoder), "--name", "x", "--task", "classification"
    )
    assert code == 2 and "classification models are made by training, not imported" in last_line(err)
    code, _, err = cli(capsys, "models", "import", str(tiny_encoder), "--name", "x", "--set", "pooling=max")
    assert code == 2 and last_line(err).startswith("error: invalid config of the encoder: pooling")
    code, _, err = cli(capsys, "models", "import", str(tmp_path / "missing"), "--name", "x")
    assert code == 2 and "cannot load model" in last_line(err)


def test_optimize_exports_an_embedder_to_onnx_and_int8(
    registry: Path, tiny_encoder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = pairs_dataset()
    code, _, err = cli(
        capsys, "models", "import", str(tiny_encoder), "--name", "emb", "--dataset", str(data.path)
    )
    assert code == 0, err
    fast = ["--set", "measure.repeats=3", "--set", "measure.threads=1", "--set", "measure.batch_sizes=[1]"]
    code, _, err = cli(capsys, "optimize", "models:/emb/1", "--onnx", *fast)
    assert code == 0, err
    onnx = load_model("models:/emb/2")
    assert onnx.info.runtime == "onnx" and onnx.info.embedding == store.get_version("emb", 1).info.embedding
    report = json.loads((onnx.path / "optimize_report.json").read_text())
    assert report["quality_metric"] == "mrr" and report["parity"]["compared"] == "embeddings"
    assert report["parity"]["final_max_abs_diff"] < 1e-4  # fp32 graph: the same embeddings
    torch_vectors = load_model("models:/emb/1").predictor.embed(["what is src1", "the tgt2"])
    assert np.allclose(onnx.predictor.embed(["what is src1", "the tgt2"]), torch_vectors, atol=1e-4)

    code, _out, err = cli(
        capsys, "optimize", "models:/emb/1", "--onnx", "--int8", *fast, "--set", "max_quality_drop=1"
    )
    assert code == 0, err
    int8 = load_model("models:/emb/3")
    assert [s["step"] for s in int8.info.lineage["steps"]][-1] == "int8"
    assert set(int8.info.metrics) == {"test_recall_at_1", "test_recall_at_10", "test_mrr"}
    vectors = int8.predictor.embed(["what is src1", "the tgt2"])
    assert vectors.shape == (2, 32) and np.isfinite(vectors).all()
