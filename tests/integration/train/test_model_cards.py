"""Model cards on the real paths: `miniml train` and `miniml optimize` write README.md into the registered
folders, and `miniml models card` prints it for NAME@ALIAS, NAME/VERSION, models:/ URIs and folders."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pandas as pd
import pytest
from huggingface_hub import ModelCard
from train_support import WORDS, write_config

from miniml.cli import main
from miniml.data.dataset import Dataset, SourceRecord, write_dataset
from miniml.modelcard import CARD_FILE, render_card
from miniml.modelfolder import read_info
from miniml.registry.store import register_model, set_alias
from miniml.runtime.resolve import resolve

HASHING = {"kind": "hashing_bag", "buckets": 4096, "dim": 16}
KINDS = {"da": ["da"], "sv": ["sv"], "nn": ["nn-a", "nn-b", "nn-c"]}  # `nn` pools three kinds of rows


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    out, err = capsys.readouterr()
    return int(exit_info.value.code or 0), out, err


def split(n: int, seed: int) -> pd.DataFrame:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = rng.choice(list(WORDS))
        text = " ".join(rng.choices(WORDS[label], k=rng.randint(3, 9)))
        rows.append({"input": text, "target": label, "kind": rng.choice(KINDS[label])})
    return pd.DataFrame(rows)


def dataset_with_sources() -> Dataset:
    sources = [
        SourceRecord(
            uri="https://example.org/a/da.txt", sha256="1" * 64, license="CC BY-SA 4.0 (x)", rows=200
        ),
        SourceRecord(
            uri="https://example.org/b/rest.txt", sha256="2" * 64, license="CC BY-SA 4.0 (y)", rows=220
        ),
    ]
    splits = {"train": split(300, 1), "validation": split(60, 2), "test": split(60, 3)}
    return write_dataset("kinds", "fpcards", splits, sources=sources)


@pytest.mark.usefixtures("mlflow_store")
def test_train_and_optimize_write_cards_that_models_card_prints(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = dataset_with_sources()
    code, _, err = cli(capsys, "train", str(write_config(tmp_path / "train.yaml", dataset, HASHING)))
    assert code == 0, err
    folder = resolve("models:/toy/1").path
    text = (folder / CARD_FILE).read_text()
    assert text == render_card(read_info(folder))  # the card is what miniml.json says
    data = ModelCard(text).data
    assert data.license == "cc-by-sa-4.0" and data.datasets == ["kinds"]
    assert data.pipeline_tag == "text-classification"
    assert {r.metric_name for r in data.eval_results} >= {"accuracy", "macro_f1"}
    assert "Dataset `kinds`, fingerprint `fpcards`." in text
    assert "| nn | " in text and "| label | precision | recall | F1 | test rows |" in text
    assert "`nn` was trained on rows whose `kind` is one of: nn-" in text

    set_alias("toy", 1, "champion")
    for ref in ("toy@champion", "toy/1", "models:/toy@champion", "toy", str(folder)):
        code, out, err = cli(capsys, "models", "card", ref)
        assert code == 0 and out == text, (ref, err)

    code, _, err = cli(capsys, "optimize", "models:/toy/1", "--int8", "--set", "measure.repeats=3",
                       "--set", "measure.threads=1", "--set", "max_quality_drop=0.2")  # fmt: skip
    assert code == 0, err
    code, optimized, _ = cli(capsys, "models", "card", "toy/2")
    assert code == 0 and optimized == (resolve("models:/toy/2").path / CARD_FILE).read_text()
    assert "- Optimized from `models:/toy/1` (version 1)." in optimized
    assert "- Step `int8`: dtype qint8, method torch_dynamic" in optimized
    assert "| nn | " in optimized and "Weights are quantized when miniml loads them" in optimized
    assert "int8" in ModelCard(optimized).data.tags


@pytest.mark.usefixtures("mlflow_store")
def test_version_without_a_card_and_bad_refs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dataset = dataset_with_sources()
    code, _, err = cli(capsys, "train", str(write_config(tmp_path / "train.yaml", dataset, HASHING)))
    assert code == 0, err
    old = Path(shutil.copytree(resolve("models:/toy/1").path, tmp_path / "old"))
    (old / CARD_FILE).unlink()  # a folder written before cards existed
    assert register_model("toy", old).version == 2
    code, out, _ = cli(capsys, "models", "card", "toy/2")
    assert code == 0 and out == render_card(read_info(old))  # rendered from the version's tags
    code, out, _ = cli(capsys, "models", "card", str(old))
    assert code == 0 and out.startswith("---\n") and "# toy" in out

    for ref, message in [
        ("toy@nope", "model 'toy' has no alias 'nope'"),
        ("ghost", "no registered model 'ghost'"),
        (str(tmp_path / "missing" / "folder"), "neither a model folder nor a registered model"),
    ]:
        code, out, err = cli(capsys, "models", "card", ref)
        assert code == 2 and not out and err.count("\n") == 1 and message in err, (ref, err)
