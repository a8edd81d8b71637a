"""`miniml optimize` end to end on a real MLflow registry: a new version with lineage, or a clear refusal."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from miniml.cli import main
from miniml.modelfolder import read_info
from miniml.registry.store import list_versions, register_model
from miniml.runtime import resolve

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "optimize"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "registry"))
from optimize_support import make_dataset, make_hashing_bag
from registry_support import blank_store, seed_embedded_store

FAST = ["--set", "measure.repeats=5", "--set", "measure.threads=1"]


@pytest.fixture(scope="module")
def blank_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return blank_store(tmp_path_factory.mktemp("mlflow_template"))


@pytest.fixture
def parent(miniml_home: Path, blank_db: Path, tmp_path: Path) -> str:
    """A hashing_bag model registered as version 1 of ``tinybag``."""
    seed_embedded_store(miniml_home, blank_db)
    dataset = make_dataset(splits=("train", "test"))  # no validation split: calibration must refuse
    folder = make_hashing_bag(tmp_path / "bag", dataset, fit=True)
    return register_model("tinybag", folder).uri


def run_cli(*args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    captured = capsys.readouterr()
    return int(exit_info.value.code or 0), captured.out + captured.err


def test_onnx_int8_registers_new_version_with_lineage(parent: str, miniml_home: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "miniml", "optimize", parent, "--onnx", "--int8", *FAST],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "registered: models:/tinybag/2" in proc.stdout
    resolved = resolve("models:/tinybag/2")
    info = read_info(resolved.path)
    assert info.runtime == "onnx" and (resolved.path / "model.onnx").is_file()
    assert info.lineage["parent"] == {"uri": parent, "name": "tinybag", "version": 1}
    assert [s["step"] for s in info.lineage["steps"]] == ["onnx_export", "int8"]
    assert 0 < info.lineage["parity"]["final_max_abs_diff"] < 0.05
    report = json.loads((resolved.path / "optimize_report.json").read_text())
    assert report["ratios"]["size"] > 3 and set(report["parent"]["latency"]) == {"1", "32"}
    assert report["parent"]["quality"]["accuracy"] > 0.6  # fitted: the comparison is meaningful
    assert abs(report["quality_drop"]) <= 0.01
    assert "| weights size (MB) |" in (resolved.path / "optimize_report.md").read_text()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--prune", "1.5"], "prune: Input should be less than 1"),
        (["--prune", "0"], "prune: Input should be greater than 0"),
        (["--onnx", "--int8", "--calibration", "tinyreviews"], "has no split 'validation'"),
        ([], "nothing to do"),
    ],
)
def test_bad_input_is_one_line_and_registers_nothing(
    parent: str, flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, output = run_cli("optimize", parent, *flags, *FAST, capsys=capsys)
    assert code == 2 and message in output
    assert output.strip().startswith("error:") and len(output.strip().splitlines()) == 1
    assert [v.version for v in list_versions("tinybag")] == [1]


def test_unsupported_ways_on_an_onnx_model(parent: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("optimize", parent, "--onnx", "--set", "dry_run=false", *FAST, capsys=capsys)[0] == 0
    for flags, message in [
        (["--prune", "0.3"], "already an ONNX model; --prune"),
        (["--onnx"], "already an ONNX"),
    ]:
        code, output = run_cli("optimize", "models:/tinybag/2", *flags, *FAST, capsys=capsys)
        assert code == 2 and message in output, output
    code, output = run_cli("optimize", "models:/tinybag/2", "--int8", *FAST, capsys=capsys)
    assert code == 0 and "registered: models:/tinybag/3" in output
    code, output = run_cli("optimize", "models:/tinybag/3", "--int8", *FAST, capsys=capsys)
    assert code == 2 and "already int8-quantized" in output
    assert sorted(v.version for v in list_versions("tinybag")) == [1, 2, 3]


def test_unsupported_architecture(parent: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = resolve(parent).path
    info = read_info(folder)
    weird = tmp_path / "weird"
    import shutil

    shutil.copytree(folder, weird)
    info.architecture = "mystery_net"
    (weird / "miniml.json").write_text(info.model_dump_json())
    code, output = run_cli("optimize", str(weird), "--onnx", *FAST, capsys=capsys)
    assert code == 2 and "cannot handle architecture 'mystery_net'" in output


def test_quality_gate_refuses_registration(parent: str, capsys: pytest.CaptureFixture[str]) -> None:
    # 95% of a fitted model's Linear weights gone: accuracy collapses, the gate (max drop 0) must refuse
    gate = ["--prune", "0.95", "--set", "max_quality_drop=0", *FAST]
    code, output = run_cli("optimize", parent, *gate, capsys=capsys)
    assert code == 2 and "not registered" in output and "--force" in output
    assert [v.version for v in list_versions("tinybag")] == [1]
    code, output = run_cli("optimize", parent, *gate, "--force", capsys=capsys)
    assert code == 0 and "registered: models:/tinybag/2" in output
    report = json.loads((resolve("models:/tinybag/2").path / "optimize_report.json").read_text())
    assert report["quality_drop"] > 0 and report["gate"] == {
        "max_quality_drop": 0.0,
        "passed": False,
        "forced": True,
    }
    assert report["steps"][0]["linear_sparsity"] == pytest.approx(0.95, abs=0.01)
