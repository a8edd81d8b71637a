"""`miniml optimize` on a tiny trained seq2seq: PyTorch int8 + pruning work end to end; ONNX, static int8,
head pruning and fine-tuning are refused with one clear line and nothing written."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest

import tiny_generative as tg
from miniml.cli import main
from miniml.data.dataset import Dataset, write_dataset
from miniml.modelfolder import read_info
from miniml.optimize.prune import sparsity

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "registry"))
from registry_support import seed_embedded_store, shared_blank_store

FAST = ["--set", "measure.repeats=3", "--set", "measure.threads=1", "--set", "measure.batch_sizes=[1,8]"]


@pytest.fixture
def digits() -> Dataset:
    """The tiny model's own task (words → digits) as a prepared dataset with train and test splits."""
    frame = pd.DataFrame({"input": [p[0] for p in tg.PAIRS], "target": [p[1] for p in tg.PAIRS]})
    return write_dataset("digits", "tiny", {"train": frame, "test": frame})


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as done:
        main(list(args))
    captured = capsys.readouterr()
    return int(done.value.code or 0), captured.out + captured.err


def test_seq2seq_int8_and_prune(
    digits: Dataset, miniml_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch
    from transformers import AutoModelForSeq2SeqLM

    from miniml.runtime import resolve
    from miniml.tasks import load_generator

    seed_embedded_store(miniml_home, shared_blank_store())
    parent = tg.trained_folder("t5")
    flags = ["--int8", "--prune", "0.3", "--dataset", str(digits.path)]
    code, output = run_cli(capsys, "optimize", str(parent), *flags, *FAST)
    assert code == 0, output
    assert "rougeL 1.0000 -> " in output and "registered: models:/tiny-t5/1" in output
    folder = resolve("models:/tiny-t5/1").path
    info = read_info(folder)
    assert info.runtime == "torch" and info.model_extra["quantization"]["method"] == "torch_dynamic"
    assert [s["step"] for s in info.lineage["steps"]] == ["prune", "int8"]
    assert info.lineage["parent"]["path"] == str(parent)

    # the pruned weights are saved (the tied output embedding is left alone) ...
    plain = AutoModelForSeq2SeqLM.from_pretrained(str(folder))
    assert sparsity(plain)["linear_sparsity"] == pytest.approx(0.3, abs=0.01)
    assert plain.lm_head.weight.data_ptr() == plain.shared.weight.data_ptr()
    assert float((plain.shared.weight == 0).float().mean()) < 0.01
    # ... and loading for generation (server, predict, evaluate) re-applies int8
    generator = load_generator(folder, device="cpu")
    dynamic = torch.ao.nn.quantized.dynamic.Linear
    assert any(isinstance(m, dynamic) for m in generator.model.modules())
    assert generator.generate([tg.PAIRS[0][0]]) == [tg.PAIRS[0][1]]

    report = json.loads((folder / "optimize_report.json").read_text())
    assert report["task"] == "seq2seq" and report["quality_metric"] == "rougeL"
    assert report["parent"]["quality"]["examples"] == len(tg.PAIRS)
    assert report["parity"]["samples"] == len(tg.PAIRS) and 0 <= report["parity"]["identical_outputs"] <= 1
    assert set(report["optimized"]["latency"]) == {"1", "8"}
    markdown = (folder / "optimize_report.md").read_text()
    assert "| test rougeL |" in markdown and "generated outputs are identical" in markdown


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--onnx"], "ONNX export supports classification, embedding models; this is a seq2seq model"),
        (["--int8", "--calibration", "digits"], "static int8 (--calibration) runs on ONNX graphs"),
        (["--prune", "0.3", "--set", "pruning.method=heads"], "head pruning is for classification models"),
        (["--prune", "0.3", "--finetune-steps", "5"], "fine-tuning after pruning supports classification"),
    ],
)
def test_unsupported_seq2seq_requests_are_one_line(
    flags: list[str], message: str, digits: Dataset, miniml_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, output = run_cli(capsys, "optimize", str(tg.trained_folder("t5")), *flags, *FAST)
    assert code == 2 and message in output, output
    assert output.strip().startswith("error:") and len(output.strip().splitlines()) == 1
    assert not (miniml_home / "runs" / "optimize").exists()  # nothing written
