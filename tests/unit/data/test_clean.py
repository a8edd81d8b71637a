import pandas as pd
import pytest
from pydantic import ValidationError

from miniml.data.clean import CleanConfig, clean_rows, cross_split_dedup, dedup, normalize


def cfg(**kw: object) -> CleanConfig:
    return CleanConfig.model_validate(kw)


def rows(
    inputs: list[str], targets: list[str] | None = None, split: list[str | None] | None = None
) -> pd.DataFrame:
    return pd.DataFrame(
        {"input": inputs, "target": targets or ["x"] * len(inputs), "_split": split or [None] * len(inputs)}
    )


def test_unicode_nfc_joins_combining_marks() -> None:
    decomposed = "sma\u030aland"  # å as a + combining ring
    assert normalize(pd.Series([decomposed]), cfg())[0] == "sm\u00e5land"
    assert normalize(pd.Series([decomposed]), cfg(unicode="none"))[0] == decomposed
    assert normalize(pd.Series(["ﬁ"]), cfg(unicode="NFKC"))[0] == "fi"


def test_whitespace_collapse_and_lines() -> None:
    text = "  two\u00a0 words\t\n\n next\r\n line  "
    assert normalize(pd.Series([text]), cfg())[0] == "two words next line"
    assert normalize(pd.Series([text]), cfg(whitespace="lines"))[0] == "two words\nnext\nline"
    assert normalize(pd.Series([text]), cfg(whitespace="keep"))[0] == text


def test_lowercase_applies_to_input_only() -> None:
    out, _ = clean_rows(rows(["Hej Verden"], ["DA"]), cfg(lowercase=True))
    assert out.iloc[0][["input", "target"]].tolist() == ["hej verden", "DA"]
    out, _ = clean_rows(rows(["Hej Verden"]), cfg())
    assert out.iloc[0]["input"] == "Hej Verden"


def test_empty_and_length_rules_count_each_row_once() -> None:
    frame = rows(["", "   ", "ab", "abcd", "abcdefgh", "fine"], ["x", "x", "x", "x", "x", " "])
    out, dropped = clean_rows(frame, cfg(min_chars=3, max_chars=6))
    assert out["input"].tolist() == ["abcd"]
    assert dropped == {"empty_input": 2, "too_short": 1, "too_long": 1, "empty_target": 1}


def test_extras_are_normalized_too() -> None:
    frame = rows(["a"]).assign(topic=["  x  y "], refs=[[" r1 ", "a\u030a"]])
    out, _ = clean_rows(frame, cfg())
    assert out.iloc[0]["topic"] == "x y"
    assert out.iloc[0]["refs"] == ["r1", "\u00e5"]


def test_dedup_within_each_split_only() -> None:
    frame = rows(["a", "a", "b", "a"], split=[None, None, None, "test"])
    out, dropped = dedup(frame, ["input"])
    assert out["input"].tolist() == ["a", "b", "a"]
    assert dropped == {"duplicate": 1}
    out, dropped = dedup(rows(["a", "a"], ["1", "2"]), ["input", "target"])
    assert len(out) == 2 and dropped == {}


def test_cross_split_dedup_keeps_test_then_validation() -> None:
    splits = {
        "train": pd.DataFrame({"input": ["a", "b", "c", "d"], "target": "x"}),
        "validation": pd.DataFrame({"input": ["b", "e"], "target": "x"}),
        "test": pd.DataFrame({"input": ["a", "e"], "target": "x"}),
    }
    out, dropped = cross_split_dedup(splits, ["input"])
    assert list(out) == ["train", "validation", "test"]
    assert out["train"]["input"].tolist() == ["c", "d"]
    assert out["validation"]["input"].tolist() == ["b"]
    assert out["test"]["input"].tolist() == ["a", "e"]
    assert dropped == {"cross_split_duplicate": 3}


def test_config_bounds_are_validated() -> None:
    with pytest.raises(ValidationError, match="max_chars"):
        cfg(min_chars=10, max_chars=5)
    with pytest.raises(ValidationError, match="Extra inputs"):
        cfg(lower=True)
