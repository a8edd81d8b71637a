import pandas as pd
import pytest
from pydantic import ValidationError

from miniml.data.augment import ShortCrops, add_short_crops
from miniml.train.config import load_train_config


def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "input": ["en to tre fire fem seks sju åtte", "hej", "ett två tre"],
            "target": ["nb", "sv", "sv"],
            "source": ["a", "b", "c"],
        }
    )


def test_crops_are_shorter_runs_of_words_with_the_row_label() -> None:
    crops = ShortCrops(per_example=3, min_words=1, max_words=4)
    out = add_short_crops(frame(), crops, seed=0)
    assert out.iloc[:3].equals(frame())  # the originals first, unchanged
    extra = out.iloc[3:]
    assert len(extra) == 6  # "hej" (one word) gets none
    for _, row in extra.iterrows():
        source = frame().set_index("source").loc[row["source"]]
        assert row["target"] == source["target"]
        assert 1 <= len(row["input"].split()) <= min(4, len(source["input"].split()) - 1)
        assert f" {row['input']} " in f" {source['input']} "
    assert add_short_crops(frame(), crops, seed=0).equals(out)  # seeded
    assert not add_short_crops(frame(), crops, seed=1).equals(out)


def test_crop_settings_are_checked(tmp_path) -> None:
    with pytest.raises(ValidationError, match="exceeds max_words"):
        ShortCrops(min_words=5, max_words=2)
    path = tmp_path / "t.yaml"
    path.write_text("model_name: m\ndataset: d\ntask: seq2seq\nmodel: {base: x}\nshort_crops: {}\n")
    with pytest.raises(Exception, match="classification only"):
        load_train_config(path)
