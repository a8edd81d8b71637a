"""seq2seq and causal_lm through the shared trainer: `miniml train | evaluate | predict` on tiny models."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

import tiny_generative as tg
from miniml.cli import main
from miniml.data.dataset import Dataset, write_dataset
from miniml.modelfolder import read_info
from miniml.registry.backend import default_tracking_uri
from miniml.registry.store import get_version, list_models
from miniml.runtime import resolve
from miniml.tasks import load_generator
from miniml.train.config import load_train_config
from miniml.train.run import fit


@pytest.fixture
def digits() -> Dataset:
    """The tiny words → digits task as a prepared dataset (test rows have an extra reference column)."""
    frame = pd.DataFrame({"input": [p[0] for p in tg.PAIRS], "target": [p[1] for p in tg.PAIRS]})
    test = frame.head(6).assign(references=[[t, t.replace(" ", "")] for t in frame.head(6)["target"]])
    return write_dataset("digits", "tiny", {"train": frame, "validation": frame.head(6), "test": test})


def write_config(path: Path, dataset: Dataset, task: str, model: dict, **overrides: object) -> Path:
    data = {
        "model_name": "digits",
        "dataset": str(dataset.path),
        "task": task,
        "model": {"max_input_tokens": 32, "max_target_tokens": 12, **model},
        "max_steps": 40,
        "batch_size": 8,
        "learning_rate": 0.01,
        "warmup_ratio": 0.0,
        "eval_steps": 20,
        "logging_steps": 5,
        "threads": 1,
        **overrides,
    }
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    out, err = capsys.readouterr()
    return int(exit_info.value.code or 0), out, err


def losses(history: list[dict]) -> list[float]:
    return [h["loss"] for h in history if "loss" in h]


@pytest.mark.usefixtures("mlflow_store")
def test_seq2seq_train_evaluate_predict_through_the_cli(
    tmp_path: Path, digits: Dataset, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write_config(tmp_path / "t.yaml", digits, "seq2seq", {"base": str(tg.model_path("t5"))})
    code, out, err = run_cli(["train", str(cfg)], capsys)
    assert code == 0, err
    assert "trained digits: version 1" in out and "exact_match" in out

    version = get_version("digits", 1)
    assert version.info is not None and version.info.task == "seq2seq"
    assert version.tags["base_model"] == str(tg.model_path("t5"))
    assert {"exact_match", "token_f1", "rouge1", "rouge2", "rougeL"} <= set(version.info.metrics)
    client = MlflowClient(default_tracking_uri())
    history = client.get_metric_history(version.run_id, "loss")
    assert len(history) >= 4 and history[-1].value < history[0].value  # the loss went down
    artifacts = {a.path for a in client.list_artifacts(version.run_id, "evaluation")}
    assert {"evaluation/report.md", "evaluation/metrics.json", "evaluation/curves.png"} <= artifacts

    code, out, err = run_cli(
        ["evaluate", "models:/digits/1", str(digits.path), "--out", str(tmp_path / "r")], capsys
    )
    assert code == 0, err
    metrics = json.loads(out)
    assert metrics["exact_match"] == pytest.approx(version.info.metrics["exact_match"])
    report = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert len(report["samples"]) == 6 and "Sample predictions" in (tmp_path / "r" / "report.md").read_text()

    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    texts = [p[0] for p in tg.PAIRS[:5]]
    source.write_text("".join(json.dumps({"text": t, "id": i}) + "\n" for i, t in enumerate(texts)))
    code, _, err = run_cli(
        ["predict", "models:/digits/1", "--input", str(source), "--output", str(target)], capsys
    )
    assert code == 0, err
    lines = [json.loads(line) for line in target.read_text().splitlines()]
    generator = load_generator(resolve("models:/digits/1").path)
    assert [line["id"] for line in lines] == list(range(5))
    assert [line["generated_text"] for line in lines] == generator.generate(texts)


@pytest.mark.parametrize("kind", ["bart", "gpt2"])
def test_tiny_models_learn_through_the_shared_trainer(tmp_path: Path, digits: Dataset, kind: str) -> None:
    task = "causal_lm" if kind == "gpt2" else "seq2seq"
    cfg = write_config(
        tmp_path / "c.yaml", digits, task, {"base": str(tg.model_path(kind))}, register_model=False
    )
    outcome = fit(load_train_config(cfg))
    seen = losses(outcome.history)
    assert len(seen) >= 4 and seen[-1] < 0.6 * seen[0]
    info = read_info(outcome.model_folder)
    assert info.task == task and info.preprocessing["task"] == task
    assert "perplexity" in info.metrics if task == "causal_lm" else "rougeL" in info.metrics
    assert (outcome.report_dir / "report.md").is_file()


def test_lora_adapter_only_folder_from_the_trainer(tmp_path: Path, digits: Dataset) -> None:
    lora = {"r": 8, "alpha": 16, "target_modules": ["c_attn"], "merge": False}
    model = {"base": str(tg.model_path("gpt2")), "lora": lora}
    cfg = write_config(tmp_path / "c.yaml", digits, "causal_lm", model, learning_rate=0.03)
    outcome = fit(load_train_config(cfg))
    seen = losses(outcome.history)
    assert seen[-1] < seen[0]
    folder = outcome.model_folder
    assert (folder / "adapter" / "adapter_config.json").is_file() and not (
        folder / "model.safetensors"
    ).exists()
    assert read_info(folder).lineage["lora"]["merged"] is False
    assert load_generator(folder).generate(["digits: one two three"])  # base + adapter load back


@pytest.mark.usefixtures("mlflow_store")
@pytest.mark.parametrize(
    ("task", "model", "needle"),
    [
        ("seq2seq", {"base": "minilm"}, "encoder-only and cannot generate text by itself"),
        ("seq2seq", {"base": "TINY_GPT2"}, "decoder-only language model"),
        (
            "causal_lm",
            {"base": "TINY_GPT2", "lora": {"target_modules": ["q_proj"]}},
            "LoRA target module(s) q_proj do not exist",
        ),
    ],
)
def test_bad_generative_configs_exit_2_and_register_nothing(
    tmp_path: Path, digits: Dataset, capsys: pytest.CaptureFixture[str], task: str, model: dict, needle: str
) -> None:
    model = {k: (str(tg.model_path("gpt2")) if v == "TINY_GPT2" else v) for k, v in model.items()}
    cfg = write_config(tmp_path / "c.yaml", digits, task, model)
    code, _, err = run_cli(["train", str(cfg)], capsys)
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ") and needle in err
    assert list_models() == []
