"""Dataset hub references: which bucket, prefix, name and fingerprint an S3 URI names."""

from __future__ import annotations

import pytest

from miniml.data import hub
from miniml.errors import DataError


def test_split_remote_ref() -> None:
    root, name, fp = hub.split_remote_ref("s3://team/datasets/v2/nordic-langid/0123abcd")
    assert (root.uri, name, fp) == ("s3://team/datasets/v2", "nordic-langid", "0123abcd")
    root, name, fp = hub.split_remote_ref("s3://team/toy/fp1/")
    assert (root.uri, name, fp) == ("s3://team", "toy", "fp1")


@pytest.mark.parametrize("bad", ["s3://team", "s3://team/toy", "s3://team/toy/fp 1"])
def test_refs_that_name_no_dataset(bad: str) -> None:
    with pytest.raises(DataError):
        hub.split_remote_ref(bad)


def test_pull_needs_a_hub_for_a_name() -> None:
    with pytest.raises(DataError, match="add the hub"):
        hub.pull("toy")
    with pytest.raises(DataError, match="either"):
        hub.pull("s3://team/toy/fp1", "s3://team")


def test_is_remote() -> None:
    assert hub.is_remote("s3://b/x/y") and not hub.is_remote("toy/fp1")
