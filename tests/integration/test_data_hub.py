"""`miniml data push | pull | list --remote` against moto's S3 server on loopback.

Each test gets its own bucket on one server. Bad input (a damaged object, a missing bucket, an unreachable
endpoint, wrong credentials, an interrupted upload) must give one ``error:`` line and leave nothing
half-written, locally or in the bucket.
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "train"))
from train_support import make_toy

from miniml.cli import main
from miniml.data import hub
from miniml.data.dataset import open_dataset, write_dataset
from miniml.data.manifest import file_records
from miniml.objectstore import S3Store, StoreError
from store_support import S3Server, moto_s3, moto_s3_with_auth, s3_env

pytestmark = pytest.mark.services


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with moto_s3() as server:
        yield server


@pytest.fixture
def bucket(s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> str:
    s3_env(monkeypatch, s3.endpoint)
    return s3.make_bucket(f"hub{uuid.uuid4().hex[:10]}")


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    out, err = capsys.readouterr()
    return int(exit_info.value.code or 0), out, err


def one_error(code: int, err: str, *expected: str) -> None:
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    for text in expected:
        assert text in err, err
    assert "miniml-test-secret" not in err


def move_home(monkeypatch: pytest.MonkeyPatch, home: Path) -> Path:
    monkeypatch.setenv("MINIML_HOME", str(home))
    return home


def test_push_pull_round_trip(
    bucket: str,
    s3: S3Server,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    dataset = make_toy()
    assert set(dataset.manifest.files) == {"train.parquet", "validation.parquet", "test.parquet"}
    code, out, err = cli(capsys, "data", "push", "toy", f"s3://{bucket}/team")
    assert code == 0 and out.startswith(f"pushed toy/fp3003 → s3://{bucket}/team/toy/fp3003 (3 files"), err
    keys = s3.keys(bucket)
    assert keys == [f"team/toy/fp3003/{n}" for n in ("manifest.json", *sorted(dataset.manifest.files))]
    stamps = {o["Key"]: o["LastModified"] for o in s3.client().list_objects_v2(Bucket=bucket)["Contents"]}  # type: ignore[attr-defined]

    code, out, err = cli(capsys, "data", "push", str(dataset.path), f"s3://{bucket}/team")
    assert code == 0 and out.startswith("already in the hub"), err
    again = {o["Key"]: o["LastModified"] for o in s3.client().list_objects_v2(Bucket=bucket)["Contents"]}  # type: ignore[attr-defined]
    assert again == stamps  # content-addressed: nothing was uploaded again

    code, out, err = cli(capsys, "data", "list", "--remote", f"s3://{bucket}/team")
    assert code == 0 and "toy" in out and "fp3003" in out, err

    home = move_home(monkeypatch, tmp_path / "other")
    code, out, err = cli(capsys, "data", "pull", "toy", f"s3://{bucket}/team")
    assert code == 0 and "every sha256 verified" in out, err
    pulled = home / "datasets" / "toy" / "fp3003"
    for name in (*dataset.manifest.files, "manifest.json"):
        assert (pulled / name).read_bytes() == (dataset.path / name).read_bytes()
    assert open_dataset("toy/fp3003").split("train").equals(dataset.split("train"))
    code, out, _ = cli(capsys, "data", "pull", f"s3://{bucket}/team/toy/fp3003")
    assert code == 0 and out.startswith("already here")
    code, out, _ = cli(capsys, "data", "list")
    assert code == 0 and "fp3003" in out


def test_dataset_written_before_file_hashes_is_pushed_with_them(
    bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dataset = make_toy()
    manifest = json.loads((dataset.path / "manifest.json").read_text())
    del manifest["files"]  # as written by miniml before manifests listed files
    (dataset.path / "manifest.json").write_text(json.dumps(manifest))
    done = hub.push(dataset.path, f"s3://{bucket}")
    assert done.moved and done.files == 3
    move_home(monkeypatch, tmp_path / "other")
    pulled = open_dataset(f"s3://{bucket}/toy/fp3003")
    assert pulled.source_uri == f"s3://{bucket}/toy/fp3003"
    assert pulled.manifest.files == file_records(dataset.path)  # every file verified on the way in


def test_pull_refuses_a_damaged_file_and_writes_nothing(
    bucket: str,
    s3: S3Server,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    make_toy()
    hub.push(open_dataset("toy").path, f"s3://{bucket}/team")
    key = "team/toy/fp3003/train.parquet"
    good = s3.client().get_object(Bucket=bucket, Key=key)["Body"].read()  # type: ignore[attr-defined]
    home = move_home(monkeypatch, tmp_path / "other")
    for damaged, expected in ((b"not parquet", "11 bytes in the bucket"), (flip(good), "sha256")):
        s3.client().put_object(Bucket=bucket, Key=key, Body=damaged)  # type: ignore[attr-defined]
        code, _, err = cli(capsys, "data", "pull", "toy/fp3003", f"s3://{bucket}/team")
        one_error(
            code, err, f"s3://{bucket}/team/toy/fp3003/train.parquet does not match its manifest", expected
        )
        assert not (home / "datasets").exists() or not any((home / "datasets").rglob("*"))


def flip(data: bytes) -> bytes:
    """The same bytes with one bit changed in the middle (same size: only the sha256 can tell)."""
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 1]) + data[middle + 1 :]


def test_push_refuses_a_locally_changed_file(
    bucket: str, s3: S3Server, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = make_toy()
    (dataset.path / "test.parquet").write_bytes(b"edited")
    code, _, err = cli(capsys, "data", "push", "toy", f"s3://{bucket}")
    one_error(code, err, "test.parquet does not match the dataset's manifest")
    assert s3.keys(bucket) == []


def test_interrupted_multipart_push_leaves_nothing_in_the_bucket(bucket: str, s3: S3Server) -> None:
    rng = np.random.default_rng(0)
    noise = [rng.bytes(3000).hex() for _ in range(2200)]  # ~13 MB of incompressible text: 3 parts of 5 MiB
    frames = {
        "train": pd.DataFrame({"input": noise, "target": ["a", "b"] * 1100}),
        "test": pd.DataFrame({"input": ["x", "y"], "target": ["a", "b"]}),
    }
    dataset = write_dataset("big", "fpbig", frames)
    assert dataset.manifest.files["train.parquet"].bytes > 10 * 2**20

    class Interrupted(S3Store):
        """The real store, with the disk failing once 6 MiB of a file are sent."""

        def upload_file(self, path: Path, key: str, progress: object = None) -> None:
            sent = 0

            def count(n: int) -> None:
                nonlocal sent
                sent += n
                if sent > 6 * 2**20:
                    raise OSError(5, "Input/output error")

            super().upload_file(path, key, count)

    store = Interrupted(bucket, multipart_threshold=5 * 2**20, part_size=5 * 2**20)
    with pytest.raises(StoreError, match="Input/output error"):
        hub.push(dataset.path, f"s3://{bucket}/team", store=store)
    assert s3.multipart_uploads(bucket) == []  # the multipart upload was aborted
    assert s3.keys(bucket) == []  # test.parquet, uploaded first, was removed again
    assert hub.list_remote(f"s3://{bucket}/team") == []
    done = hub.push(dataset.path, f"s3://{bucket}/team", store=S3Store(bucket, multipart_threshold=5 * 2**20))
    assert done.moved and len(s3.keys(bucket)) == 3


def test_list_shows_only_complete_datasets(
    bucket: str, s3: S3Server, capsys: pytest.CaptureFixture[str]
) -> None:
    make_toy()
    make_toy("toy2", n_train=200)
    hub.push(open_dataset("toy").path, f"s3://{bucket}/hub")
    hub.push(open_dataset("toy2").path, f"s3://{bucket}/hub")
    s3.client().put_object(Bucket=bucket, Key="hub/half/fp1/train.parquet", Body=b"x")  # type: ignore[attr-defined]
    found = hub.list_remote(f"s3://{bucket}/hub")
    assert [(d.name, d.fingerprint, d.files) for d in found] == [("toy", "fp3003", 3), ("toy2", "fp2003", 3)]
    code, _, err = cli(capsys, "data", "pull", "half", f"s3://{bucket}/hub")
    one_error(code, err, "no dataset 'half'", "datasets there: toy, toy2")


@pytest.mark.parametrize("problem", ["missing bucket", "unreachable endpoint", "unknown dataset"])
def test_bad_store_settings_are_one_line(
    problem: str,
    bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    make_toy()
    target, extra, expected = f"s3://{bucket}/hub", [], ""
    if problem == "missing bucket":
        target, expected = f"s3://{bucket}-gone/hub", "does not exist"
    elif problem == "unreachable endpoint":
        extra, expected = ["--endpoint-url", "http://127.0.0.1:9"], "cannot reach the S3 endpoint"
    if problem != "unknown dataset":
        one_error(*cli(capsys, "data", "push", "toy", target, *extra)[::2], expected)
        one_error(*cli(capsys, "data", "list", "--remote", target, *extra)[::2], expected)
    else:
        expected = "no dataset toy/nope"
    home = move_home(monkeypatch, tmp_path / "other")
    one_error(*cli(capsys, "data", "pull", "toy/nope", target, *extra)[::2], expected)
    assert not (home / "datasets").exists() or not any((home / "datasets").rglob("*"))


def test_wrong_credentials_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    make_toy()
    with moto_s3_with_auth(tmp_path) as (server, keys):
        s3_env(monkeypatch, server.endpoint, **keys)
        S3Store("secure").client.create_bucket(Bucket="secure")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "miniml-test-secret")  # the right key id, a wrong secret
        code, _, err = cli(capsys, "data", "push", "toy", "s3://secure/hub")
        one_error(code, err, "S3 refused the credentials for s3://secure")
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIANOBODY")
        code, _, err = cli(capsys, "data", "list", "--remote", "s3://secure/hub")
        one_error(code, err, "S3 refused the credentials")
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", keys["AWS_ACCESS_KEY_ID"])
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", keys["AWS_SECRET_ACCESS_KEY"])
        code, out, err = cli(capsys, "data", "push", "toy", "s3://secure/hub")
        assert code == 0 and out.startswith("pushed"), err
        assert keys["AWS_SECRET_ACCESS_KEY"] not in out + err
