import hashlib
from pathlib import Path

import pytest

from miniml.data.catalog import CatalogFile
from miniml.data.fetch import cached_path, fetch_files, resolve_mirror, source_of
from miniml.errors import DataError

URL = "https://example.org/owner/repo/abc123/data/file.txt"


def entry(data: bytes, url: str = URL) -> CatalogFile:
    return CatalogFile(url=url, sha256=hashlib.sha256(data).hexdigest(), bytes=len(data), license="test")


def mirror_with(tmp_path: Path, data: bytes) -> Path:
    target = tmp_path / "mirror" / "example.org/owner/repo/abc123/data/file.txt"
    target.parent.mkdir(parents=True)
    target.write_bytes(data)
    return tmp_path / "mirror"


def test_mirror_replaces_the_https_prefix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    file = entry(b"x")
    assert source_of(file, None) == URL
    assert (
        source_of(file, "http://127.0.0.1:8000")
        == "http://127.0.0.1:8000/example.org/owner/repo/abc123/data/file.txt"
    )
    assert source_of(file, tmp_path) == tmp_path / "example.org/owner/repo/abc123/data/file.txt"
    monkeypatch.setenv("MINIML_DATA_MIRROR", "http://127.0.0.1:8000/")
    assert resolve_mirror(None) == "http://127.0.0.1:8000"  # read at call time
    assert resolve_mirror(str(tmp_path)) == tmp_path
    with pytest.raises(DataError, match=r"data mirror folder .* does not exist"):
        resolve_mirror(str(tmp_path / "nope"))


def test_folder_mirror_is_copied_verified_and_cached(tmp_path: Path) -> None:
    data = b"hello mirror\n" * 1000
    mirror = mirror_with(tmp_path, data)
    [result] = fetch_files([entry(data)], mirror=str(mirror))
    assert result.transferred and result.path == cached_path(entry(data))
    assert result.path.read_bytes() == data
    assert result.path.name == hashlib.sha256(data).hexdigest() and result.path.parent.name == "sha256"
    [again] = fetch_files([entry(data)], mirror=str(tmp_path / "gone"))  # cached: the mirror is not needed
    assert not again.transferred


def test_corrupted_mirror_copy_is_rejected_and_not_kept(tmp_path: Path) -> None:
    data = b"the real bytes\n"
    mirror = mirror_with(tmp_path, b"the fake bytes\n")
    with pytest.raises(DataError, match=r"is corrupted: .*the bad copy was deleted"):
        fetch_files([entry(data)], mirror=str(mirror))
    folder = cached_path(entry(data)).parent
    assert [p.name for p in folder.iterdir() if not p.name.endswith(".lock")] == []


def test_missing_mirror_file_says_the_mirror_may_be_incomplete(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"file.txt is missing from the mirror.*may be incomplete"):
        fetch_files([entry(b"x")], mirror=str(tmp_path / "empty"))
