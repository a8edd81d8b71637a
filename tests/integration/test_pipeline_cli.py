"""``miniml pipeline run`` end to end on a tiny real pipeline: local CSV → prepare → train → evaluate → gate.

The data is a few hundred generated sentences of three languages written to a CSV file and prepared through
the real ``data prepare`` code; the model is a tiny hashing_bag trained for a few dozen steps and tracked and
registered in a real embedded MLflow store. A second run with a 1-step model (worse, or at best equal) must
keep the champion, exit 0, and say so; with ``gate.required`` it exits 1 (without training again). Then an
ONNX optimize step turns the kept version into the candidate, forced past the gate. Serving is tested
elsewhere.
"""

from __future__ import annotations

import csv
import json
import random
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "registry"))
from registry_support import seed_embedded_store, shared_blank_store

from miniml.cli import main
from miniml.registry import store

WORDS = {
    "da": "hej med dig hvordan går det godt jeg er glad i dag hvad siger du".split(),  # noqa: SIM905
    "sv": "jag heter anna och bor i stockholm det är bra idag vad säger du".split(),  # noqa: SIM905
    "nn": "eg veit ikkje kva eg skal seie no men det er fint her".split(),  # noqa: SIM905
}
NAME = "toy-langid"


@pytest.fixture(autouse=True)
def embedded(miniml_home: Path) -> None:
    seed_embedded_store(miniml_home, shared_blank_store())


@pytest.fixture
def pipeline_file(tmp_path: Path) -> Path:
    """A pipeline file naming a data config (a local CSV) and a train config, both next to it."""
    rng = random.Random(7)
    with (tmp_path / "rows.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "lang"])
        for _ in range(450):
            lang = rng.choice(sorted(WORDS))
            writer.writerow([" ".join(rng.choices(WORDS[lang], k=rng.randint(4, 9))), lang])
    files = {
        "data.yaml": {
            "name": NAME,
            "sources": [{"path": "rows.csv", "format": "csv", "input": "text", "target": "lang"}],
        },
        "train.yaml": {
            "model_name": NAME,
            "dataset": NAME,
            "model": {"kind": "hashing_bag", "buckets": 2048, "dim": 16},
            "max_steps": 40,
            "eval_steps": 40,
            "batch_size": 16,
            "learning_rate": 0.05,
            "threads": 1,
        },
        "pipeline.yaml": {
            "name": NAME,
            "data": "data.yaml",
            "train": "train.yaml",
            "gate": {"metric": "macro_f1"},
        },
    }
    for name, data in files.items():
        (tmp_path / name).write_text(yaml.safe_dump(data), encoding="utf-8")
    return tmp_path / "pipeline.yaml"


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(["pipeline", "run", *args])
    out, err = capsys.readouterr()
    return int(exit_info.value.code or 0), out, err


def state(home: Path) -> dict:
    return json.loads((home / "pipelines" / NAME / "state.json").read_text(encoding="utf-8"))


def test_pipeline_registers_promotes_then_keeps_the_champion(
    pipeline_file: Path, miniml_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli([str(pipeline_file)], capsys)
    assert code == 0, err
    for step in ("data", "train", "evaluate", "gate"):
        assert f"✓ {step}" in out, out
    assert f"{NAME} v1 is now champion" in out and f"models:/{NAME}@champion is v1" in out
    assert store.get_version(NAME, "champion").version == 1
    first = state(miniml_home)["steps"]
    assert first["gate"]["outputs"]["promoted"] is True and first["train"]["outputs"]["version"] == 1
    assert first["evaluate"]["outputs"]["metrics"]["macro_f1"] == pytest.approx(
        first["train"]["outputs"]["metrics"]["macro_f1"]  # the registered copy scores what training measured
    )
    from miniml.registry.backend import get_client

    run = get_client().get_run(first["train"]["outputs"]["run_id"])
    assert run.data.tags["miniml.pipeline"] == NAME
    assert run.inputs.dataset_inputs[0].dataset.digest == first["data"]["outputs"]["fingerprint"]

    worse = [str(pipeline_file), "--set", "train.max_steps=1", "--set", "train.eval_steps=1"]
    code, out, err = run_cli(worse, capsys)
    assert code == 0, err
    assert "already prepared" in out and "✓ train" in out
    assert "kept champion v1: macro_f1 candidate v2" in out, out
    assert f"models:/{NAME}@champion is v1 (v2 not promoted)" in out
    assert store.get_version(NAME, "champion").version == 1
    second = state(miniml_home)["steps"]["gate"]["outputs"]
    assert second["promoted"] is False and second["candidate_score"] <= second["champion_score"]

    code, out, err = run_cli([*worse, "--set", "gate.required=true"], capsys)
    assert code == 1, (out, err)
    assert "↷ train" in out and "↷ evaluate" in out, out  # same config and dataset: not trained again
    assert "error: pipeline toy-langid: gate.required is set and v2 was not promoted" in err
    assert [v.version for v in store.list_versions(NAME)] == [1, 2]

    onnx = ["optimize.onnx=true", "optimize.measure.repeats=3", "optimize.measure.batch_sizes=[1]"]
    code, out, err = run_cli([*worse, *(f"--set={o}" for o in onnx), "--set=gate.force=true"], capsys)
    assert code == 0, err
    assert "↷ train" in out and f"✓ optimize models:/{NAME}/3 from models:/{NAME}/2" in out, out
    assert f"✓ evaluate models:/{NAME}/3 on test" in out and f"{NAME} v3 is now champion" in out
    optimized = store.get_version(NAME, "champion")
    assert optimized.version == 3 and optimized.info is not None and optimized.info.runtime == "onnx"


def test_a_failing_step_stops_the_pipeline_with_one_line(
    pipeline_file: Path, miniml_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (pipeline_file.parent / "rows.csv").unlink()
    code, out, err = run_cli([str(pipeline_file)], capsys)
    assert code == 2
    assert err.startswith("error: pipeline toy-langid: step data failed: ") and err.count("\n") == 1, err
    assert "✗ data" in out and "train" not in out
    assert state(miniml_home)["steps"]["data"]["status"] == "failed"
