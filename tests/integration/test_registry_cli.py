"""`miniml models list | show | alias | unalias | promote` on a real embedded MLflow store."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "registry"))
from registry_support import make_model_folder, seed_embedded_store, shared_blank_store

from miniml.cli import main
from miniml.registry import store
from miniml.registry.tracking import RunTracker
from miniml.runtime import resolve

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def embedded(miniml_home: Path) -> None:
    seed_embedded_store(miniml_home, shared_blank_store())


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    out, err = capsys.readouterr()
    return int(exit_info.value.code or 0), out, err


def register(tmp_path: Path, name: str, macro_f1: float) -> int:
    folder = make_model_folder(tmp_path / f"{name}-{macro_f1}", name=name, metrics={"macro_f1": macro_f1})
    return store.register_model(name, folder).version


def test_list_and_show(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(capsys, "models", "list")[1].startswith("no registered models yet")
    register(tmp_path, "langid", 0.91)
    register(tmp_path, "langid", 0.93)
    store.set_alias("langid", 1, "champion")
    code, out, _ = cli(capsys, "models", "list")
    assert code == 0
    row = next(line for line in out.splitlines() if "langid" in line)
    assert "v2" in row and "champion→v1" in row and "classification" in row and "macro_f1 0.9300" in row
    code, out, _ = cli(capsys, "models", "show", "langid")
    assert code == 0 and "fp-toy-1" in out and "macro_f1 0.9100" in out
    v1_row = next(line for line in out.splitlines() if "v1 " in line)
    assert "champion" in v1_row and store.get_version("langid", 1).run_id in v1_row
    code, out, _ = cli(capsys, "models", "show", "langid", "--json")
    shown = json.loads(out)
    assert [v["version"] for v in shown] == [1, 2] and shown[0]["aliases"] == ["champion"]
    assert shown[1]["dataset"]["fingerprint"] == "fp-toy-1"


def test_unknown_name_version_alias_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    register(tmp_path, "known", 0.5)
    cases = [
        (("models", "show", "ghost"), "error: no registered model 'ghost' (registered models: known)"),
        (("models", "alias", "known", "4", "challenger"), "error: model 'known' has no version 4"),
        (("models", "unalias", "known", "staging"), "error: model 'known' has no alias 'staging'"),
        (("models", "promote", "known", "9"), "error: model 'known' has no version 9"),
        (("models", "alias", "known", "1", "bad alias"), "error: invalid alias 'bad alias'"),
    ]
    for args, message in cases:
        code, _, err = cli(capsys, *args)
        assert code == 2, args
        assert err.startswith(message) and err.count("\n") == 1, err


def test_alias_and_unalias(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    register(tmp_path, "m", 0.5)
    register(tmp_path, "m", 0.6)
    code, out, _ = cli(capsys, "models", "alias", "m", "2", "challenger")
    assert code == 0 and out.strip() == "models:/m@challenger → v2"
    assert resolve("models:/m@challenger").version == 2
    code, out, _ = cli(capsys, "models", "unalias", "m", "challenger")
    assert code == 0 and store.get_version("m", 2).aliases == ()


def test_promote_gate_refuses_then_force(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    register(tmp_path, "gate", 0.80)
    register(tmp_path, "gate", 0.79)
    register(tmp_path, "gate", 0.85)
    code, out, _ = cli(capsys, "models", "promote", "gate", "1")
    assert code == 0 and "gate v1 is now champion" in out and "no champion yet" in out
    code, out, err = cli(capsys, "models", "promote", "gate", "2")
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and "0.7900" in err and "0.8000" in err and "--force" in err
    assert store.get_version("gate", "champion").version == 1
    code, _, err = cli(capsys, "models", "promote", "gate", "3", "--margin", "0.1")
    assert code == 1 and "by more than 0.1" in err
    code, out, _ = cli(capsys, "models", "promote", "gate", "3", "--margin", "0.01")
    assert code == 0 and "0.8500 vs champion v1 0.8000" in out
    code, out, _ = cli(capsys, "models", "promote", "gate", "2", "--force")
    assert code == 0 and "forced" in out
    assert store.get_version("gate", "champion").version == 2
    code, _, err = cli(capsys, "models", "promote", "gate", "3", "--margin", "-1")
    assert code == 2 and "margin" in err


def test_resume_a_run_by_id_then_register_from_it(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt), RunTracker("resumable") as first:
        first.log_metrics({"loss": 1.0}, step=1)
        raise KeyboardInterrupt
    folder = make_model_folder(tmp_path / "model", name="resumable")
    with RunTracker("resumable", run_id=first.run_id) as again:
        again.log_metrics({"loss": 0.5}, step=2)
        mv = store.register_model("resumable", folder, run_id=again.run_id)
    assert mv.run_id == first.run_id
    assert resolve("models:/resumable").path.joinpath("model.safetensors").is_file()


def test_the_installed_entry_point_runs(tmp_path: Path, miniml_home: Path) -> None:
    register(tmp_path, "entry", 0.5)
    env = {"MINIML_HOME": str(miniml_home), "PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-m", "miniml", "models", "show", "entry", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)[0]["name"] == "entry"
    assert done.stderr == ""  # MLflow stays quiet
