import json

import pytest
import torch

from miniml.errors import DataError
from miniml.evaluate.predict import predict_file
from miniml.modelfolder import ModelInfo
from miniml.models import HashingBagSpec
from miniml.models.folder import save_model_folder
from miniml.models.registry import get_builder
from miniml.tasks import load_predictor


@pytest.fixture
def model(tmp_path):
    spec = HashingBagSpec(buckets=1024, dim=8)
    featurizer = spec.make_featurizer([])
    torch.manual_seed(0)
    module = get_builder("hashing_bag")(spec, ["a", "b", "c"], featurizer)
    info = ModelInfo(
        name="demo",
        task="classification",
        architecture="hashing_bag",
        labels=["a", "b", "c"],
        preprocessing=featurizer.preprocessing(),
    )
    save_model_folder(tmp_path / "m", module, featurizer, spec, info)
    return tmp_path / "m"


def test_streams_in_order_with_ids_and_top_k(model, tmp_path) -> None:
    texts = [f"text number {i}" for i in range(23)]
    src = tmp_path / "in.jsonl"
    src.write_text(
        "".join(json.dumps({"text": t, "id": f"r{i}", "other": 1}) + "\n" for i, t in enumerate(texts))
    )
    out = tmp_path / "sub" / "out.jsonl"
    assert predict_file(model, src, out, batch_size=5, top_k=2) == 23
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == [f"r{i}" for i in range(23)]
    probs = load_predictor(model).predict_proba(texts)
    for row, p in zip(rows, probs, strict=True):
        assert row["label"] == "abc"[p.argmax()] and row["score"] == pytest.approx(p.max(), abs=1e-6)
        assert [x["label"] for x in row["top_k"]] == ["abc"[j] for j in (-p).argsort()[:2]]
        assert row["top_k"][0]["score"] == row["score"] and "other" not in row


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"text": "ok"}\n{"text": 3}\n', "in.jsonl:2"),
        ("not json\n", "not valid JSON"),
        ('["text"]\n', '"text"'),
        ('{"text": "ok", "id": NaN}\n', "not valid JSON"),  # Python's json reads NaN; JSON has none
    ],
)
def test_bad_lines_leave_no_output(model, tmp_path, content, message) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text(content)
    out = tmp_path / "out.jsonl"
    out.write_text("previous results\n")
    with pytest.raises(DataError, match=message):
        predict_file(model, src, out, batch_size=1)
    assert out.read_text() == "previous results\n"  # the old file is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "m", "out.jsonl"]
