"""`miniml data prepare` of the shipped nordic-langid and sst5 configs, from the catalog mirror."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from miniml.cli import main
from miniml.data.catalog import dataset_files
from miniml.data.dataset import open_dataset

REPO = Path(__file__).resolve().parents[2]


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    out = capsys.readouterr()
    return int(exit_info.value.code or 0), out.out, out.err


def printed(out: str, key: str) -> str:
    match = re.search(rf"^{key}: (\S+)$", out, re.MULTILINE)
    assert match, out
    return match.group(1)


@pytest.fixture
def http_mirror(mirror_dir: Path) -> Iterator[str]:
    """`python -m http.server` on loopback serving the shared mirror folder."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [
        sys.executable,
        "-m",
        "http.server",
        str(port),
        "--bind",
        "127.0.0.1",
        "--directory",
        str(mirror_dir),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_nordic_langid_five_classes_stratified_and_stable(
    mirror_dir: Path, miniml_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MINIML_DATA_MIRROR", str(mirror_dir))
    config = str(REPO / "examples/nordic-langid/data.yaml")
    code, out, err = run(["data", "prepare", config], capsys)
    assert code == 0, err
    ds = open_dataset(printed(out, "dataset"))
    assert ds.fingerprint == printed(out, "fingerprint") and "prepared in" in out

    splits = {s: ds.split(s) for s in ("train", "validation", "test")}
    every = pd.concat(splits.values())
    assert ds.labels() == ["da", "nb", "nn", "other", "sv"]
    assert {"input", "target", "lang", "source"} <= set(every.columns)
    for label, total in every["target"].value_counts().items():
        share = len(splits["test"].query("target == @label")) / total
        assert 0.09 < share < 0.11, (label, share)
    counts = every["target"].value_counts()
    assert counts["other"] <= 2 * counts[["da", "nb", "nn", "sv"]].max()
    assert every["input"].str.contains("[A-ZÆØÅ]").mean() > 0.3  # stored text keeps its case
    assert {"en", "de", "nl", "is", "fi", "fr", "es", "pl", "fo"} <= set(splits["test"]["lang"])
    inputs = {s: set(f["input"]) for s, f in splits.items()}
    assert not inputs["test"] & inputs["train"] and not inputs["validation"] & inputs["train"]
    assert not inputs["test"] & inputs["validation"]
    catalog = [f.sha256 for name in ("nordic-langid", "nordic-langid-extra") for f in dataset_files(name)]
    assert sorted(s.sha256 for s in ds.manifest.sources) == sorted(catalog)
    assert {"ntrex", "flores", "tatoeba", "xsid", "npk", "lia", "danplus", "dkhate", "superlim"} <= set(
        every["source"].str.split("/").str[0]
    )
    assert ds.manifest.dropped.get("duplicate", 0) > 0

    stamp = (ds.path / "manifest.json").stat().st_mtime_ns
    code, out, _ = run(["data", "prepare", config], capsys)
    assert code == 0 and "already prepared" in out and printed(out, "fingerprint") == ds.fingerprint
    assert (ds.path / "manifest.json").stat().st_mtime_ns == stamp
    assert [p.name for p in ds.path.parent.iterdir()] == [ds.fingerprint]


def test_sst5_keeps_source_splits_over_http(
    http_mirror: str, miniml_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(REPO / "examples/reviews/data.yaml")
    code, out, err = run(["data", "prepare", config, "--mirror", http_mirror], capsys)
    assert code == 0, err
    ds = open_dataset("sst5")
    assert ds.labels() == ["1", "2", "3", "4", "5"]
    counts = ds.manifest.counts
    assert counts["test"] == 2210 and 8500 < counts["train"] <= 8544 and 1090 < counts["validation"] <= 1101
    train, test = ds.split("train"), ds.split("test")
    assert not set(test["input"]) & set(train["input"])
    assert train["input"].iloc[0].startswith("The Rock is destined")
    code, out, _ = run(["data", "show", "sst5"], capsys)
    assert code == 0 and ds.fingerprint in out and "sst_train.txt" in out and "cross_split_duplicate" in out
