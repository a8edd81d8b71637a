"""`miniml monitor profile | report` and `miniml models promote --online` on a real trained model."""

from __future__ import annotations

import json
import random
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "registry"))
from registry_support import make_model_folder, seed_embedded_store, shared_blank_store

from miniml.cli import main
from miniml.modelfolder import read_info, verify_folder, write_info
from miniml.registry import store
from serve_support import toy_frame, train_toy_model


@pytest.fixture(autouse=True)
def embedded(miniml_home: Path) -> None:
    seed_embedded_store(miniml_home, shared_blank_store())


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A toy model (trained with this code: it has a profile) and a dataset with a larger validation split
    to profile it on (the training set's 40 validation rows are too few for stable label shares)."""
    from miniml.data.dataset import write_dataset

    home = tmp_path_factory.mktemp("monitor_home")
    folder = train_toy_model(home, ("da", "sv", "nn"))
    labels = ("da", "sv", "nn")
    splits = {
        "train": toy_frame(240, 1, labels),
        "validation": toy_frame(1000, 2, labels),
        "test": toy_frame(40, 3, labels),
    }
    return folder, write_dataset("toy", "monitor-profile", splits, root=home / "datasets").path


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    out, err = capsys.readouterr()
    return int(exit_info.value.code or 0), out, err


def traffic(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    return path


def without_profile(folder: Path, target: Path) -> Path:
    """A copy of ``folder`` as a version trained before profiles existed."""
    shutil.copytree(folder, target)
    (target / "reference.json").unlink()
    write_info(target, read_info(target))  # the manifest no longer lists it
    return target


def test_training_writes_the_profile_into_the_manifest(trained: tuple[Path, Path]) -> None:
    folder, _ = trained
    info = verify_folder(folder)
    assert info.manifest is not None and "reference.json" in info.manifest
    profile = json.loads((folder / "reference.json").read_text())
    assert profile["model"] == "toy" and sum(profile["predicted_labels"].values()) == 40  # validation rows


def test_profile_then_report(
    trained: tuple[Path, Path], tmp_path: Path, miniml_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, dataset = trained
    old = without_profile(folder, tmp_path / "old")
    assert store.register_model("toy", old).version == 1
    code, _, err = cli(capsys, "monitor", "report", "models:/toy/1", "--input", str(tmp_path / "x.jsonl"))
    assert code == 2 and err.count("\n") == 1 and "miniml monitor profile" in err  # no profile yet

    code, out, _ = cli(capsys, "monitor", "profile", "models:/toy/1", "--dataset", str(dataset))
    written = miniml_home / "monitor" / "toy" / "v1" / "reference.json"
    assert code == 0 and str(written) in out and written.is_file()

    same = traffic(tmp_path / "same.jsonl", toy_frame(400, 11, ("da", "sv", "nn"))["input"].tolist())
    code, out, _ = cli(
        capsys, "monitor", "report", "models:/toy/1", "--input", str(same), "--out", str(tmp_path / "r1")
    )
    summary = json.loads((tmp_path / "r1" / "summary.json").read_text())
    assert code == 0 and "no drift over 400 inputs" in out
    assert not summary["drift_detected"] and all(t["passed"] for t in summary["tests"].values())
    assert set(summary["tests"]) == {"chars", "tokens", "oov_rate", "scripts", "labels", "confidence"}
    page = (tmp_path / "r1" / "report.html").read_text()
    assert page.count("<img") == 6 and "no drift" in page

    rng = random.Random(0)
    mixed = [" ".join("".join(rng.sample(w, len(w))) for w in t.split()) for t in json_texts(same)]
    shuffled = traffic(tmp_path / "shuffled.jsonl", mixed)
    code, out, _ = cli(
        capsys,
        "monitor",
        "report",
        "models:/toy/1",
        "--input",
        str(shuffled),
        "--out",
        str(tmp_path / "r2"),
        "--fail-on-drift",
    )
    summary = json.loads((tmp_path / "r2" / "summary.json").read_text())
    assert code == 1 and summary["drift_detected"] and not summary["tests"]["oov_rate"]["passed"]

    (tmp_path / "bad.jsonl").write_text('{"txt": "a"}\n')
    code, _, err = cli(capsys, "monitor", "report", "models:/toy/1", "--input", str(tmp_path / "bad.jsonl"))
    assert code == 2 and 'bad.jsonl:1 has no "text"' in err


def json_texts(path: Path) -> list[str]:
    return [json.loads(line)["text"] for line in path.read_text().splitlines()]


def test_promote_online_needs_enough_feedback_and_a_better_accuracy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for v in (1, 2):
        assert (
            store.register_model("langid", make_model_folder(tmp_path / f"m{v}", name="langid")).version == v
        )
    store.set_alias("langid", 1, "champion")
    log = tmp_path / "feedback.jsonl"

    def rows(n: int, right: dict[int, int]) -> None:
        with log.open("a") as fh:
            for i in range(n):
                answers = {
                    role: {"version": v, "prediction": "da" if i < right[v] else "sv"}
                    for role, v in (("champion", 1), ("challenger", 2))
                }
                fh.write(json.dumps({"model": "langid", "label": "da", "answers": answers}) + "\n")

    rows(4, {1: 3, 2: 4})
    args = ["models", "promote", "langid", "2", "--online", "--min-feedback", "10", "--feedback", str(log)]
    code, _, err = cli(capsys, *args)
    assert code == 1 and "4 labelled answers of v2; the gate needs 10" in err
    rows(16, {1: 6, 2: 4})  # v1 now 9/20 right, v2 8/20: the champion is better
    code, _, err = cli(capsys, *args)
    assert code == 1 and "online_accuracy: candidate v2 0.4000 vs champion v1 0.4500" in err
    rows(20, {1: 0, 2: 20})  # v1 9/40, v2 28/40
    code, out, _ = cli(capsys, *args)
    assert code == 0 and "langid v2 is now champion" in out and "paired inputs" in out
    assert store.get_version("langid", "champion").version == 2
