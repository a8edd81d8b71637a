import pandas as pd
import pytest
from pydantic import ValidationError

from miniml.data.split import SplitConfig, assign_splits, cap_classes, cap_sources
from miniml.errors import DataError


def cfg(**kw: object) -> SplitConfig:
    return SplitConfig.model_validate(kw)


def labelled(counts: dict[str, int], split: str | None = None) -> pd.DataFrame:
    targets = [label for label, n in counts.items() for _ in range(n)]
    return pd.DataFrame(
        {
            "input": [f"{t}{i}" for i, t in enumerate(targets)],
            "target": targets,
            "_split": [split] * len(targets),
        }
    )


def test_fractions_must_sum_to_one() -> None:
    with pytest.raises(ValidationError, match="must be 1"):
        cfg(train=0.8, validation=0.1, test=0.2)


def test_stratified_split_keeps_class_proportions_and_is_seeded() -> None:
    frame = labelled({"a": 100, "b": 50, "c": 10})
    names = assign_splits(frame, cfg())
    table = pd.crosstab(frame["target"], names)
    assert table.loc["a"].to_dict() == {"train": 80, "validation": 10, "test": 10}
    assert table.loc["b"].to_dict() == {"train": 40, "validation": 5, "test": 5}
    assert table.loc["c"].to_dict() == {"train": 8, "validation": 1, "test": 1}
    assert names.equals(assign_splits(frame, cfg()))
    assert not names.equals(assign_splits(frame, cfg(seed=14)))


def test_fixed_splits_are_kept_and_zero_fractions_respected() -> None:
    frame = pd.concat([labelled({"a": 20}), labelled({"a": 5}, split="test")], ignore_index=True)
    names = assign_splits(frame, cfg(train=0.75, validation=0.25, test=0.0, stratify=[]))
    assert names.value_counts().to_dict() == {"train": 15, "validation": 5, "test": 5}
    assert (names[20:] == "test").all()


def test_stratify_column_must_exist() -> None:
    with pytest.raises(DataError, match=r"split\.stratify: column 'lang' not found"):
        assign_splits(labelled({"a": 3}), cfg(stratify=["target", "lang"]))


def test_max_per_class_and_balance_drop_seeded_samples() -> None:
    frame = labelled({"a": 30, "b": 10, "c": 5})
    out, dropped = cap_classes(frame, cfg(max_per_class={"a": 12}))
    assert out["target"].value_counts().to_dict() == {"a": 12, "b": 10, "c": 5}
    assert dropped == {"class_cap": 18}
    out2, _ = cap_classes(frame, cfg(max_per_class={"a": 12}))
    assert out.index.equals(out2.index) and out.index.is_monotonic_increasing
    out, dropped = cap_classes(frame, cfg(max_per_class=8))
    assert out["target"].value_counts().to_dict() == {"a": 8, "b": 8, "c": 5}
    out, dropped = cap_classes(frame, cfg(balance=True))
    assert out["target"].value_counts().to_dict() == {"a": 5, "b": 5, "c": 5}
    assert dropped == {"balance": 30}


def test_cap_sources_samples_each_capped_source_with_the_seed() -> None:
    frame = pd.DataFrame({"input": [f"t{i}" for i in range(30)], "_source": [0] * 20 + [1] * 10})
    out, dropped = cap_sources(frame, {0: 5}, seed=3)
    assert dropped == {"source_cap": 15}
    assert (out["_source"] == 0).sum() == 5 and (out["_source"] == 1).sum() == 10
    assert out.index.is_monotonic_increasing  # order kept
    again, _ = cap_sources(frame, {0: 5}, seed=3)
    assert again["input"].tolist() == out["input"].tolist()
    other, _ = cap_sources(frame, {0: 5}, seed=4)
    assert other["input"].tolist() != out["input"].tolist()
    kept, dropped = cap_sources(frame, {1: 50}, seed=3)
    assert dropped == {} and len(kept) == 30
