"""What training records about its dataset for the model card: rows, sources, label composition."""

from __future__ import annotations

import pandas as pd

from miniml.data.dataset import SourceRecord, write_dataset
from miniml.data.facts import MAX_VALUES, dataset_facts


def frame(n: int) -> pd.DataFrame:
    rows = []
    for i in range(n):
        label = ["da", "other"][i % 2]
        lang = "da" if label == "da" else ["is", "fo", "en"][i % 3]
        rows.append({"input": f"text {i}", "target": label, "lang": lang, "sent_id": f"s{i}", "tags": ["a"]})
    return pd.DataFrame(rows)


def test_facts_of_a_classification_dataset() -> None:
    sources = [SourceRecord(uri="https://x.org/a.conllu", sha256="0" * 64, license="CC BY-SA 4.0", rows=60)]
    dataset = write_dataset("langs", "fp1", {"train": frame(60), "test": frame(12)}, sources=sources)
    facts = dataset_facts(dataset)
    assert facts["name"] == "langs" and facts["fingerprint"] == "fp1" and facts["split"] == "test"
    assert facts["rows"] == {"train": 60, "test": 12}
    assert facts["label_counts"]["test"] == {"da": 6, "other": 6}
    assert facts["sources"] == [{"uri": "https://x.org/a.conllu", "license": "CC BY-SA 4.0", "rows": 60}]
    # lang is a small category (kept); sent_id is free text (60 values, dropped); tags are lists (dropped)
    assert facts["composition"] == {"lang": {"da": {"da": 30}, "other": {"is": 10, "fo": 10, "en": 10}}}
    assert "uri" not in facts


def test_free_text_targets_get_composition_over_all_rows() -> None:
    train = pd.DataFrame(
        {
            "input": [f"q{i}" for i in range(300)],
            "target": [f"SELECT {i}" for i in range(300)],
            "source": ["a", "b", "c"] * 100,
        }
    )
    facts = dataset_facts(write_dataset("sql", "fp2", {"train": train}))
    assert "label_counts" not in facts
    assert facts["composition"] == {"source": {"*": {"a": 100, "b": 100, "c": 100}}}


def test_many_values_are_summed_as_other() -> None:
    train = pd.DataFrame(
        {
            "input": [f"t{i}" for i in range(40)],
            "target": ["x"] * 40,
            "kind": [f"k{i % 20}" for i in range(40)],
        }
    )
    values = dataset_facts(write_dataset("many", "fp3", {"train": train}))["composition"]["kind"]["x"]
    assert len(values) == MAX_VALUES + 1 and values["(other)"] == 2 * (20 - MAX_VALUES)
