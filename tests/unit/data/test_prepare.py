from pathlib import Path

import pandas as pd
import pytest

from miniml.config import load_config
from miniml.data.prepare import PrepareConfig, plan, prepare
from miniml.errors import ConfigError, DataError

CONFIG = """
name: toy
sources:
  - path: reviews.csv
    format: csv
    input: text
    target: stars
    label_map: {"1": neg, "2": neg, "4": pos, "5": pos, "3": null}
  - path: extra.txt
    format: text
    input: text
    label: pos
    split: test
clean: {min_chars: 3}
split: {train: 0.6, validation: 0.2, test: 0.2, seed: 1}
"""


def make_project(tmp_path: Path) -> Path:
    lines = ["text,stars"] + [f"review number {i},{1 + i % 5}" for i in range(50)]
    lines += ["review number 1,1", "ok,5", "   ,4"]  # a duplicate, a too-short and an empty row
    (tmp_path / "reviews.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "extra.txt").write_text("review number 0\nbrand new text\n")
    (tmp_path / "data.yaml").write_text(CONFIG)
    return tmp_path / "data.yaml"


def test_prepare_builds_splits_and_reports_drops(tmp_path: Path, miniml_home: Path) -> None:
    config = load_config(PrepareConfig, make_project(tmp_path), base_dir_key="base_dir")
    ds = prepare(config)
    assert ds.path.parent == miniml_home / "datasets" / "toy"
    m = ds.manifest
    # 50 rows: 10 of stars 3 excluded; "review number 0" is in the fixed test split, so train loses it.
    assert m.dropped == {
        "label_excluded": 10,
        "empty_input": 1,
        "too_short": 1,
        "duplicate": 1,
        "cross_split_duplicate": 1,
    }
    assert sum(m.counts.values()) == 40 + 2 - 1
    assert m.label_counts["test"]["pos"] >= 2
    assert m.cleaning_version and m.config["name"] == "toy" and "base_dir" not in m.config
    assert [s.rows for s in m.sources] == [53, 2]
    test_inputs = set(ds.split("test")["input"])
    assert not test_inputs & set(ds.split("train")["input"]) and not test_inputs & set(
        ds.split("validation")["input"]
    )


def test_fingerprint_is_stable_and_follows_config_and_data(tmp_path: Path) -> None:
    path = make_project(tmp_path)
    first = plan(load_config(PrepareConfig, path, base_dir_key="base_dir")).fingerprint
    assert plan(load_config(PrepareConfig, path, base_dir_key="base_dir")).fingerprint == first
    reseeded = plan(load_config(PrepareConfig, path, ["split.seed=2"], base_dir_key="base_dir")).fingerprint
    assert reseeded != first
    with (tmp_path / "extra.txt").open("a") as fh:
        fh.write("one more line\n")
    assert plan(load_config(PrepareConfig, path, base_dir_key="base_dir")).fingerprint != first


def test_prepare_twice_does_not_rebuild(tmp_path: Path) -> None:
    config = load_config(PrepareConfig, make_project(tmp_path), base_dir_key="base_dir")
    ds = prepare(config)
    stamp = (ds.path / "manifest.json").stat().st_mtime_ns
    again = prepare(config)
    assert again.path == ds.path and (again.path / "manifest.json").stat().st_mtime_ns == stamp


def test_empty_result_is_an_error_and_writes_nothing(tmp_path: Path, miniml_home: Path) -> None:
    config = load_config(
        PrepareConfig, make_project(tmp_path), ["clean.min_chars=500"], base_dir_key="base_dir"
    )
    with pytest.raises(DataError, match=r"no training rows left after cleaning .*too_short 44"):
        prepare(config)
    assert not (miniml_home / "datasets").exists()


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    path = make_project(tmp_path)
    with pytest.raises(ConfigError, match=r"sources.0.format: Input tag 'xlsx'"):
        load_config(PrepareConfig, path, ["sources=[{path: a, format: xlsx, input: a, label: x}]"])
    with pytest.raises(ConfigError, match=r"split: Value error, train \+ validation \+ test must be 1"):
        load_config(PrepareConfig, path, ["split.test=0.5"])
    with pytest.raises(ConfigError, match=r"name: String should match pattern"):
        load_config(PrepareConfig, path, ["name=Bad Name"])
    with pytest.raises(ConfigError, match=r"sources\.0: Value error, template"):
        load_config(
            PrepareConfig, path, ["sources=[{path: a, format: csv, input_template: '{a!r}', label: x}]"]
        )


def test_extras_missing_in_some_sources_are_filled(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text('{"d": "first dialogue", "s": "x", "r": ["x", "y"]}\n')
    (tmp_path / "b.jsonl").write_text('{"d": "second dialogue", "s": "z"}\n')
    config = PrepareConfig.model_validate(
        {
            "name": "fill",
            "base_dir": str(tmp_path),
            "sources": [
                {
                    "path": "a.jsonl",
                    "format": "jsonl",
                    "input": "d",
                    "target": "s",
                    "split": "train",
                    "extras": {"refs": ["{s}", "{s}"], "topic": "t"},
                },
                {"path": "b.jsonl", "format": "jsonl", "input": "d", "target": "s", "split": "train"},
            ],
        }
    )
    frame = prepare(config).split("train")
    assert frame["topic"].tolist() == ["t", ""]
    assert [list(v) for v in frame["refs"]] == [["x", "x"], []]
    assert isinstance(frame, pd.DataFrame)


def test_environment_overrides_sit_between_file_and_set(tmp_path: Path) -> None:
    path = make_project(tmp_path)
    env = {"MINIML_DATA__SPLIT__SEED": "7", "MINIML_DATA__CLEAN__MIN_CHARS": "4"}
    config = load_config(PrepareConfig, path, ["split.seed=9"], environ=env)
    assert (config.split.seed, config.clean.min_chars) == (9, 4)


def test_max_rows_caps_one_source_after_cleaning(tmp_path: Path) -> None:
    (tmp_path / "big.txt").write_text(
        "".join(f"big sentence {i}\n" for i in range(40)) + "big sentence 1\nx\n"
    )
    (tmp_path / "small.txt").write_text("".join(f"small sentence {i}\n" for i in range(10)))
    (tmp_path / "data.yaml").write_text(
        "name: capped\n"
        "sources:\n"
        "  - {path: big.txt, format: text, input: text, label: a, max_rows: 12, extras: {source: big}}\n"
        "  - {path: small.txt, format: text, input: text, label: a, extras: {source: small}}\n"
        "clean: {min_chars: 3}\n"
        "split: {train: 1.0, validation: 0.0, test: 0.0, seed: 5}\n"
    )
    ds = prepare(load_config(PrepareConfig, tmp_path / "data.yaml", base_dir_key="base_dir"))
    train = ds.split("train")
    assert train["source"].value_counts().to_dict() == {"big": 12, "small": 10}
    assert ds.manifest.dropped == {"too_short": 1, "duplicate": 1, "source_cap": 28}  # 40 clean rows → 12
    assert "_source" not in train.columns
    (tmp_path / "data.yaml").write_text(
        "name: capped\nsources:\n  - {path: big.txt, format: text, input: text, label: a, max_rows: 0}\n"
    )
    with pytest.raises(ConfigError, match=r"sources\.0\.max_rows.*greater than or equal to 1"):
        load_config(PrepareConfig, tmp_path / "data.yaml", base_dir_key="base_dir")


def test_an_evaluation_only_dataset_needs_no_train_rows(tmp_path: Path) -> None:
    (tmp_path / "held.txt").write_text("held out sentence one\nheld out sentence two\n")
    (tmp_path / "data.yaml").write_text(
        "name: heldout\nsources:\n  - {path: held.txt, format: text, input: text, label: a, split: test}\n"
    )
    ds = prepare(load_config(PrepareConfig, tmp_path / "data.yaml", base_dir_key="base_dir"))
    assert ds.manifest.counts == {"test": 2}
    (tmp_path / "data.yaml").write_text(
        "name: heldout\nsources:\n  - {path: held.txt, format: text, input: text, label: a}\n"
        "clean: {min_chars: 50}\n"
    )
    with pytest.raises(DataError, match="no training rows left"):  # rows split by fractions must reach train
        prepare(load_config(PrepareConfig, tmp_path / "data.yaml", base_dir_key="base_dir"))
