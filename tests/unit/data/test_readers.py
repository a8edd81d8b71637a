from pathlib import Path

import pandas as pd
import pytest
from pydantic import TypeAdapter, ValidationError

from miniml.data.readers import Format, read
from miniml.errors import DataError

FORMAT: TypeAdapter[Format] = TypeAdapter(Format)


def fmt(spec: object) -> Format:
    return FORMAT.validate_python(spec)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_format_shorthand_and_unknown_type() -> None:
    assert fmt("csv").type == "csv"
    assert fmt({"type": "folder", "unit": "file"}).unit == "file"  # type: ignore[union-attr]
    with pytest.raises(ValidationError, match="does not match any of the expected tags"):
        fmt("xlsx")
    with pytest.raises(ValidationError, match="Extra inputs"):
        fmt({"type": "csv", "sep": ";"})


def test_csv_keeps_every_value_as_text(tmp_path: Path) -> None:
    path = write(tmp_path / "a.csv", 'language,sentence\nnn,"eit, to"\nNA,007\n')
    frame = read(path, fmt("csv"))
    assert frame.to_dict("list") == {"language": ["nn", "NA"], "sentence": ["eit, to", "007"]}


def test_csv_without_header_takes_column_names(tmp_path: Path) -> None:
    path = write(tmp_path / "a.tsv", "x\t1\ny\t2\n")
    frame = read(path, fmt({"type": "csv", "delimiter": "\t", "columns": ["text", "label"]}))
    assert frame["text"].tolist() == ["x", "y"]
    assert frame["label"].tolist() == ["1", "2"]


def test_jsonl_keeps_types_and_names_the_bad_line(tmp_path: Path) -> None:
    path = write(tmp_path / "a.jsonl", '{"q": "2019-01-01", "sql": {"sel": 1}}\n\n{"q": "x", "sql": {}}\n')
    frame = read(path, fmt("jsonl"))
    assert frame["q"].tolist() == ["2019-01-01", "x"]  # not turned into a date
    assert frame["sql"].tolist() == [{"sel": 1}, {}]
    write(path, '{"q": 1}\n{"q": 2\n')
    with pytest.raises(DataError, match=r"line 2 of .*a.jsonl is not valid JSON"):
        read(path, fmt("jsonl"))
    write(path, "[1, 2]\n")
    with pytest.raises(DataError, match="not a JSON object"):
        read(path, fmt("jsonl"))


def test_parquet(tmp_path: Path) -> None:
    pd.DataFrame({"text": ["a", "b"], "label": [1, 2]}).to_parquet(tmp_path / "a.parquet")
    frame = read(tmp_path / "a.parquet", fmt("parquet"))
    assert frame["text"].tolist() == ["a", "b"]


def test_text_one_example_per_non_blank_line(tmp_path: Path) -> None:
    path = write(tmp_path / "pos.txt", "good\n\n  \nfine\n")
    assert read(path, fmt("text"))["text"].tolist() == ["good", "fine"]


def test_fasttext_first_label_and_text(tmp_path: Path) -> None:
    path = write(tmp_path / "a.txt", "__label__4\tThe Rock is great .\n__label__1 __label__x  bad  film\n")
    frame = read(path, fmt("fasttext"))
    assert frame.to_dict("list") == {"label": ["4", "1"], "text": ["The Rock is great .", "bad  film"]}
    write(path, "__label__4\tok\nno label here\n")
    with pytest.raises(DataError, match=r"line 2 of .* is not '__label__LABEL text'"):
        read(path, fmt("fasttext"))


def test_conllu_reads_text_comments(tmp_path: Path) -> None:
    path = write(
        tmp_path / "a.conllu",
        "# sent_id = s1\n# text = Hvor kommer julemanden fra?\n1\tHvor\thvor\tADV\t_\t_\t2\tadvmod\t_\t_\n\n"
        "# sent_id = s2\n# text = Ja.\n1\tJa\tja\tINTJ\t_\t_\t0\troot\t_\tSpaceAfter=No\n"
        "2\t.\t.\tPUNCT\t_\t_\t1\tpunct\t_\t_\n\n",
    )
    frame = read(path, fmt("conllu"))
    assert frame.to_dict("list") == {"text": ["Hvor kommer julemanden fra?", "Ja."], "sent_id": ["s1", "s2"]}
    write(path, "language,sentence\nda,hej\n")
    with pytest.raises(DataError, match="no '# text =' lines"):
        read(path, fmt("conllu"))


def test_conllu_keeps_other_comments_as_columns(tmp_path: Path) -> None:
    # xSID: only blocks with `# dialect = B` are Bokmål; the column lets a source's `extract` keep them
    path = write(
        tmp_path / "no.conll",
        "# id = 1\n# text = Hvor varmt er det?\n# intent = weather\n# dialect = B\n1\tHvor\tw\tO\n\n"
        "# id = 2\n# text = Ka blir været?\n# dialect = T\n1\tKa\tw\tO\n\n# text = Uten dialekt\n1\tUten\n\n",
    )
    frame = read(path, fmt("conllu"))
    assert frame["dialect"].tolist() == ["B", "T", ""]
    assert frame["intent"].tolist() == ["weather", "", ""]
    assert frame["id"].tolist() == ["1", "2", ""]
    assert frame["text"].tolist() == ["Hvor varmt er det?", "Ka blir været?", "Uten dialekt"]


def test_tokens_joins_units_and_reattaches_punctuation(tmp_path: Path) -> None:
    path = write(
        tmp_path / "dan.tsv",
        "Dette\tO\tO\ner\tO\tO\n(\tO\tO\nikke\tO\tO\n)\tO\tO\ntilfældigt\tO\tO\n.\tO\tO\n\n\n"
        "Okay\tO\tO\n,\tO\tO\ntænkte\tO\tO\njeg\tO\tO\n!\tO\tO\n",
    )
    frame = read(path, fmt("tokens"))
    assert frame.to_dict("list") == {
        "text": ["Dette er (ikke) tilfældigt.", "Okay, tænkte jeg!"],
        "unit": ["1", "2"],
    }
    raw = read(path, fmt({"type": "tokens", "detokenize": False}))
    assert raw["text"].tolist()[1] == "Okay , tænkte jeg !"
    with pytest.raises(DataError, match=r"line 1 of .*dan.tsv has 3 column\(s\), the token is in column 5"):
        read(path, fmt({"type": "tokens", "column": 5}))


def test_folder_per_label_files_and_subfolders(tmp_path: Path) -> None:
    write(tmp_path / "pos.txt", "good\nfine\n")
    write(tmp_path / "neg.txt", "bad\n")
    frame = read(tmp_path, fmt({"type": "folder", "glob": "*.txt"}))
    assert frame[["label", "text"]].values.tolist() == [["neg", "bad"], ["pos", "good"], ["pos", "fine"]]
    (tmp_path / "docs" / "spam").mkdir(parents=True)
    write(tmp_path / "docs" / "spam" / "1.txt", "buy now\nreally")
    frame = read(tmp_path / "docs", fmt({"type": "folder", "unit": "file"}))
    assert frame[["label", "text"]].values.tolist() == [["spam", "buy now\nreally"]]
    with pytest.raises(DataError, match="holds no files matching"):
        read(tmp_path / "docs", fmt({"type": "folder", "glob": "*.csv"}))


def test_unreadable_files_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        read(tmp_path / "missing.csv", fmt("csv"))
    (tmp_path / "latin1.txt").write_bytes("smørrebrød\n".encode("latin-1"))
    with pytest.raises(DataError, match="is not utf-8 text") as err:
        read(tmp_path / "latin1.txt", fmt("text"))
    assert "\n" not in str(err.value)
    assert (
        read(tmp_path / "latin1.txt", fmt({"type": "text", "encoding": "latin-1"}))["text"][0] == "smørrebrød"
    )
    write(tmp_path / "bad.parquet", "not parquet")
    with pytest.raises(DataError, match=r"cannot read .*bad.parquet as parquet"):
        read(tmp_path / "bad.parquet", fmt("parquet"))
