"""Bad input to `miniml data ...`: one `error:` line on stderr, exit code 2, nothing written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from miniml.cli import main

REPO = Path(__file__).resolve().parents[2]
GOOD_SOURCE = "{path: reviews.csv, format: csv, input: text, target: stars}"
CASES = {
    "unknown format": (
        "{path: reviews.csv, format: xlsx, input: text, target: stars}",
        r"sources\.0\.format",
    ),
    "missing column": (
        "{path: reviews.csv, format: csv, input: review, target: stars}",
        r"column 'review' not found",
    ),
    "unreadable file": (
        "{path: broken.parquet, format: parquet, input: text, target: stars}",
        r"cannot read .*parquet",
    ),
    "missing file": (
        "{path: nope.csv, format: csv, input: text, target: stars}",
        r"no file matches 'nope.csv'",
    ),
    "unknown catalog name": (
        "{dataset: imdb, format: csv, input: text, target: stars}",
        r"unknown catalog dataset",
    ),
    "unknown catalog file": (
        "{dataset: sst5, files: x.txt, format: fasttext, input: text, target: label}",
        "x.txt",
    ),
    "unmapped labels": (
        "{path: reviews.csv, format: csv, input: text, target: stars, label_map: {'1': neg, '5': pos}}",
        r"label_map leaves label\(s\) '2', '3', '4' unmapped",
    ),
    "empty after cleaning": (GOOD_SOURCE, r"no training rows left after cleaning .*too_short 20"),
}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    rows = [f"review {i},{1 + i % 5}" for i in range(20)]
    (tmp_path / "reviews.csv").write_text("text,stars\n" + "\n".join(rows) + "\n")
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 this is not parquet")
    return tmp_path


@pytest.mark.parametrize("case", list(CASES))
def test_bad_prepare_input_is_one_line_exit_2_nothing_written(
    case: str, project: Path, miniml_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source, message = CASES[case]
    config = project / "data.yaml"
    config.write_text(f"name: bad\nsources: [{source}]\n")
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "data",
                "prepare",
                str(config),
                "--set",
                "clean.min_chars=1000" if "empty" in case else "name=bad",
            ]
        )
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert re.search(message, err), err
    assert not (miniml_home / "datasets").exists()


def test_show_and_fetch_unknown_names(capsys: pytest.CaptureFixture[str]) -> None:
    for args in (["data", "show", "nope"], ["data", "fetch", "imdb"]):
        with pytest.raises(SystemExit) as exit_info:
            main(args)
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1


def test_good_project_prepares(project: Path, miniml_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (project / "data.yaml").write_text(f"name: good\nsources: [{GOOD_SOURCE}]\nsplit: {{stratify: []}}\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "prepare", str(project / "data.yaml"), "--set", "split.seed=3"])
    assert exit_info.value.code == 0
    assert len(list((miniml_home / "datasets" / "good").iterdir())) == 1


def test_real_entry_point_fails_in_one_line(project: Path, miniml_home: Path) -> None:
    (project / "data.yaml").write_text(
        "name: bad\nsources: [{dataset: imdb, format: csv, input: a, label: x}]\n"
    )
    env = {"PYTHONPATH": str(REPO / "src"), "MINIML_HOME": str(miniml_home), "PATH": "/usr/bin:/bin"}
    cmd = [sys.executable, "-m", "miniml", "data", "prepare", str(project / "data.yaml")]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("error: unknown catalog dataset 'imdb'")
    assert not (miniml_home / "datasets").exists()
