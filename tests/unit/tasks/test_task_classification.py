import numpy as np
import pandas as pd
import pytest

from miniml.errors import DataError
from miniml.models.hashing import HashingFeaturizer
from miniml.tasks import get_task


def test_examples_collate_decode() -> None:
    task = get_task("classification", labels=["neg", "pos"])
    feat = HashingFeaturizer(buckets=1024)
    examples = task.examples(pd.DataFrame({"input": ["good", "bad"], "target": ["pos", "neg"]}), feat)
    batch = task.collate(feat, examples)
    assert batch["labels"].tolist() == [1, 0]
    assert batch["offsets"].tolist()[0] == 0
    with pytest.raises(DataError, match="'meh'"):
        task.label_ids(["meh"])
    answers = task.decode(np.array([[0.2, 0.8], [0.9, 0.1]], dtype=np.float32), top_k=1)
    assert answers[0] == {"label": "pos", "score": pytest.approx(0.8), "scores": {"pos": pytest.approx(0.8)}}
    assert list(task.decode(np.array([[0.2, 0.8]]))[0]["scores"]) == ["pos", "neg"]
