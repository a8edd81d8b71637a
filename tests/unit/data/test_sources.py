import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from miniml.data.sources import SourceConfig, load, materialize, resolve
from miniml.errors import DataError


def source(**kw: object) -> SourceConfig:
    return SourceConfig.model_validate(kw)


def loaded(tmp_path: Path, **kw: object):  # type: ignore[no-untyped-def]
    resolved = resolve(source(**kw), 0, tmp_path)
    return load(resolved, materialize([resolved]))


def test_source_shape_is_validated() -> None:
    with pytest.raises(ValidationError, match="exactly one of dataset"):
        source(dataset="sst5", path="x.csv", format="csv", input="a", label="x")
    with pytest.raises(ValidationError, match="exactly one of input"):
        source(path="x.csv", format="csv", input="a", input_template="{a}", label="x")
    with pytest.raises(ValidationError, match="exactly one of target"):
        source(path="x.csv", format="csv", input="a", target="b", label="x")
    with pytest.raises(ValidationError, match="label_default only applies"):
        source(path="x.csv", format="csv", input="a", target="b", label_default="other")
    with pytest.raises(ValidationError, match="clash"):
        source(path="x.csv", format="csv", input="a", label="x", keep=["target"])
    with pytest.raises(ValidationError, match="named groups"):
        source(path="x.csv", format="csv", input="a", label="x", path_fields="[a-z]+")
    with pytest.raises(ValidationError, match="not a plain field name"):
        source(path="x.csv", format="csv", input_template="{a.__class__}", label="x")


def test_csv_with_label_map_extras_and_keep(tmp_path: Path) -> None:
    (tmp_path / "wiki.csv").write_text("language,sentence,id\ndk,hej med dig,1\nfo,hey,2\nsv,hej,3\n")
    frame, dropped, rows = loaded(
        tmp_path,
        path="wiki.csv",
        format="csv",
        input="sentence",
        target="language",
        label_map={"dk": "da", "sv": None},
        label_default="other",
        keep=["id"],
        extras={"lang": "{language}", "source": "nordicdsl"},
        split="test",
    )
    assert frame.to_dict("list") == {
        "input": ["hej med dig", "hey"],
        "target": ["da", "other"],
        "id": ["1", "2"],
        "lang": ["dk", "fo"],
        "source": ["nordicdsl", "nordicdsl"],
        "_split": ["test", "test"],
    }
    assert dropped == {"label_excluded": 1} and rows == [3]


def test_glob_path_fields_and_missing_column(tmp_path: Path) -> None:
    for name in ("da_a.txt", "sv_b.txt"):
        (tmp_path / name).write_text(f"text of {name}\n")
    frame, _, rows = loaded(
        tmp_path, path="*.txt", format="text", input="text", path_fields=r"^(?P<lang>[a-z]+)_", target="lang"
    )
    assert frame[["input", "target"]].values.tolist() == [
        ["text of da_a.txt", "da"],
        ["text of sv_b.txt", "sv"],
    ]
    assert rows == [1, 1]
    with pytest.raises(
        DataError, match=r"source 1 \(\*.txt\): column 'label' not found \(available: text, file"
    ):
        loaded(tmp_path, path="*.txt", format="text", input="text", target="label")
    with pytest.raises(DataError, match=r"no file matches 'nope/\*\.txt'"):
        loaded(tmp_path, path="nope/*.txt", format="text", input="text", label="x")


def test_extract_and_rewrite(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text(
        '{"text": "table: t1\\nQ: how many?\\nA: SELECT COUNT(\\"x\\") FROM t1;"}\n{"text": "no answer"}\n'
    )
    frame, dropped, _ = loaded(
        tmp_path,
        path="a.jsonl",
        format="jsonl",
        extract=[{"column": "text", "pattern": r"(?s)^(?P<prompt>.*\nA:)\s*(?P<sql>.*)$"}],
        rewrite=[
            {"column": "sql", "pattern": r'COUNT\("([^"]*)"\)', "replacement": r"COUNT \1"},
            {"column": "sql", "pattern": ";$"},
        ],
        input="prompt",
        target="sql",
    )
    assert frame[["input", "target"]].values.tolist() == [
        ["table: t1\nQ: how many?\nA:", "SELECT COUNT x FROM t1"]
    ]
    assert dropped == {"pattern_mismatch": 1}


def test_collect_gathers_matches_per_group_before_extract(tmp_path: Path) -> None:
    rows = [
        {"t": "a", "q": "Q1", "sql": 'SELECT "Year" FROM "a" WHERE "Team" = \'x "y"\''},
        {"t": "a", "q": "Q2", "sql": 'SELECT "Name" FROM "a"'},  # dropped by the extract, still collected
        {"t": "b", "q": "Q3", "sql": 'SELECT "rank" FROM "b" WHERE "Year" > 3'},
    ]
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    frame, dropped, _ = loaded(
        tmp_path,
        path="a.jsonl",
        format="jsonl",
        collect=[
            {
                "column": "sql",
                "pattern": r"'[^']*'|FROM \"[^\"]*\"|\"([^\"]*)\"",  # values and the table do not count
                "by": "t",
                "into": "columns",
            }
        ],
        extract=[{"column": "sql", "pattern": " WHERE (?P<cond>.+)$"}],
        input_template="{t}: {columns} | {q}",
        target="sql",
    )
    assert frame["input"].tolist() == ["a: Name, Team, Year | Q1", "b: rank, Year | Q3"]
    assert dropped == {"pattern_mismatch": 1}
    with pytest.raises(DataError, match="nope"):
        loaded(
            tmp_path,
            path="a.jsonl",
            format="jsonl",
            collect=[{"column": "sql", "pattern": "x", "by": "nope", "into": "c"}],
            input="q",
            target="sql",
        )


def test_join_by_row_checks_alignment_and_by_key(tmp_path: Path) -> None:
    (tmp_path / "q.jsonl").write_text('{"t": "a", "id": 1, "q": "Q1"}\n{"t": "b", "id": 3, "q": "Q2"}\n')
    (tmp_path / "r.jsonl").write_text('{"t": "a", "id": 1, "sql": "S1"}\n{"t": "b", "id": 2, "sql": "S2"}\n')
    spec = {"path": "q.jsonl", "format": "jsonl", "input": "q", "target": "sql"}
    frame, _, _ = loaded(tmp_path, **spec, join={"path": "r.jsonl", "by": "row", "check": ["t"]})
    assert frame[["input", "target"]].values.tolist() == [["Q1", "S1"], ["Q2", "S2"]]
    with pytest.raises(DataError, match="disagree on 'id' at row 2; not aligned"):
        loaded(tmp_path, **spec, join={"path": "r.jsonl", "by": "row"})
    frame, _, _ = loaded(tmp_path, **spec, join={"path": "r.jsonl", "by": ["t", "id"]})
    assert frame[["input", "target"]].values.tolist() == [["Q1", "S1"]]


def test_extras_list_becomes_a_list_column(tmp_path: Path) -> None:
    (tmp_path / "d.jsonl").write_text('{"d": "hi", "s1": "a", "s2": "b"}\n')
    frame, _, _ = loaded(
        tmp_path,
        path="d.jsonl",
        format="jsonl",
        input="d",
        target="s1",
        extras={"references": ["{s1}", "{s2}"]},
    )
    assert frame["references"].tolist() == [["a", "b"]]
