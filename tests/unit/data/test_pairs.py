"""Embedding data: pairs of rows that mean the same, hard negatives, splits that keep a group together."""

from pathlib import Path

import pandas as pd

from miniml.config import load_config
from miniml.data.pairs import NegativesConfig, PairsConfig, add_negatives, make_pairs
from miniml.data.prepare import PrepareConfig, plan
from miniml.data.split import SplitConfig, assign_splits

REPO = Path(__file__).resolve().parents[3]


def questions() -> pd.DataFrame:
    rows = [
        ("t1", "How old is Ann?", "SELECT age WHERE name = ann"),
        ("t1", "What age is Ann?", "SELECT age WHERE name = ANN"),  # same SQL ignoring case
        ("t1", "how old is ann?", "SELECT age WHERE name = ann"),  # same text ignoring case: one text
        ("t1", "Ann's age?", "SELECT age WHERE name = ann"),
        ("t1", "How old is Bob?", "SELECT age WHERE name = bob"),  # alone in its group: unpaired
        ("t2", "Where is Oslo?", "SELECT country WHERE city = oslo"),
        ("t2", "Which country is Oslo in?", "SELECT country WHERE city = oslo"),
        ("t3", "Who won?", "SELECT winner"),  # unpaired, and no other SQL on its table
    ]
    frame = pd.DataFrame(rows, columns=["table", "input", "target"])
    return frame.assign(_split="train", _source=0)


def test_groups_become_chained_pairs_of_distinct_texts() -> None:
    pairs, dropped = make_pairs(questions(), PairsConfig(by=["table", "target"]))
    assert list(zip(pairs["input"], pairs["target"], strict=True)) == [
        ("How old is Ann?", "What age is Ann?"),
        ("What age is Ann?", "Ann's age?"),
        ("Where is Oslo?", "Which country is Oslo in?"),
    ]
    assert dropped == {"unpaired": 2}
    assert pairs["table"].tolist() == ["t1", "t1", "t2"]  # the first row's other columns are kept
    assert pairs["group"].nunique() == 2 and pairs["_split"].isna().all()  # split by fractions later


def test_max_per_group_and_exact_matching() -> None:
    pairs, _ = make_pairs(questions(), PairsConfig(by=["table", "target"], max_per_group=1))
    assert len(pairs) == 2
    exact, dropped = make_pairs(questions(), PairsConfig(by=["table", "target"], casefold=False))
    # ANN is another SQL when case counts; 'how old is ann?' is then a text of its own
    assert ("How old is Ann?", "how old is ann?") in list(zip(exact["input"], exact["target"], strict=True))
    assert dropped == {"unpaired": 3}


def test_negatives_share_the_table_and_differ_in_sql() -> None:
    rows = add_negatives(questions(), NegativesConfig(by=["table"], differ=["target"], text="input"), seed=1)
    by_input = dict(zip(rows["input"], rows["negative"], strict=True))
    assert by_input["How old is Bob?"] in {
        "How old is Ann?",
        "What age is Ann?",
        "how old is ann?",
        "Ann's age?",
    }
    assert by_input["How old is Ann?"] == "How old is Bob?"  # the only other SQL of table t1
    assert by_input["Where is Oslo?"] == "" and by_input["Who won?"] == ""  # no candidate: empty
    again = add_negatives(questions(), NegativesConfig(by=["table"], text="input"), seed=1)
    assert again["negative"].tolist() == rows["negative"].tolist()  # seeded


def test_negatives_then_pairs_keep_the_first_rows_negative() -> None:
    rows = add_negatives(questions(), NegativesConfig(by=["table"], text="input"), seed=3)
    pairs, _ = make_pairs(rows, PairsConfig(by=["table", "target"]))
    assert pairs["negative"].tolist()[:2] == ["How old is Bob?", "How old is Bob?"]


def test_group_by_keeps_every_group_in_one_split() -> None:
    frame = pd.DataFrame(
        {"input": [f"q{i}" for i in range(300)], "target": "x", "group": [f"g{i // 3}" for i in range(300)]}
    ).assign(_split=None)
    names = assign_splits(frame, SplitConfig(stratify=[], group_by=["group"]))
    assert (names.groupby(frame["group"]).nunique() == 1).all()
    assert names.value_counts().to_dict() == {"train": 240, "validation": 30, "test": 30}


def test_configs_without_the_new_keys_keep_their_fingerprint_keys() -> None:
    config = load_config(PrepareConfig, REPO / "examples" / "text2sql" / "data.yaml", base_dir_key="base_dir")
    identity = config.identity()
    assert "pairs" not in identity and "negatives" not in identity and "group_by" not in identity["split"]


def test_the_paraphrase_pairs_config_validates_and_resolves() -> None:
    path = REPO / "examples" / "paraphrase" / "pairs.yaml"
    config = load_config(PrepareConfig, path, base_dir_key="base_dir")
    assert config.pairs is not None and config.negatives is not None
    assert len(plan(config).fingerprint) == 16
