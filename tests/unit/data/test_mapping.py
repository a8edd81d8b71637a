import pandas as pd
import pytest

from miniml.data.mapping import Template, apply_label_map
from miniml.errors import ConfigError, DataError


def test_template_fills_fields_and_keeps_literal_braces() -> None:
    frame = pd.DataFrame({"table": ["t1", "t2"], "question": ["How many?", None], "n": [1, 2]})
    out = Template("table: {table}\nQ: {question} {{n={n}}}").render(frame, "test")
    assert out.tolist() == ["table: t1\nQ: How many? {n=1}", "table: t2\nQ:  {n=2}"]
    assert Template("constant").render(frame, "test").tolist() == ["constant", "constant"]


@pytest.mark.parametrize("bad", ["{x.__class__}", "{x[0]}", "{x!r}", "{x:>10}", "{}", "{x"])
def test_template_refuses_anything_but_plain_fields(bad: str) -> None:
    with pytest.raises(ConfigError, match="template"):
        Template(bad)


def test_template_names_missing_columns() -> None:
    with pytest.raises(DataError, match=r"source 1: column 'summary' not found \(available: dialogue\)"):
        Template("{summary}").render(pd.DataFrame({"dialogue": ["hi"]}), "source 1")


def test_label_map_maps_drops_and_defaults() -> None:
    raw = pd.Series(["dk", "sv", "is", "xx"])
    with pytest.raises(DataError, match=r"label_map leaves label\(s\) 'xx' unmapped"):
        apply_label_map(raw, {"dk": "da", "sv": "sv", "is": "other"}, None, "src")
    mapped, keep = apply_label_map(raw, {"dk": "da", "sv": None}, "other", "src")
    assert mapped[keep].tolist() == ["da", "other", "other"]
    assert keep.tolist() == [True, False, True, True]
