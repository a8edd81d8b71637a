from pathlib import Path

import pytest

from miniml.io import atomic_dir, atomic_write_json, atomic_write_text


def test_atomic_write_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "f.txt"
    atomic_write_text(target, "hello")
    atomic_write_json(tmp_path / "j.json", {"b": 1, "a": 2})
    assert target.read_text() == "hello"
    assert (tmp_path / "j.json").read_text().startswith('{\n  "a": 2')
    assert [p.name for p in target.parent.iterdir()] == ["f.txt"]


def test_atomic_dir_failure_leaves_nothing(tmp_path: Path) -> None:
    final = tmp_path / "out"
    with pytest.raises(RuntimeError), atomic_dir(final) as tmp:
        (tmp / "a").write_text("x")
        raise RuntimeError("boom")
    assert not final.exists() and list(tmp_path.iterdir()) == []


def test_atomic_dir_existing_is_kept(tmp_path: Path) -> None:
    final = tmp_path / "out"
    with atomic_dir(final) as tmp:
        (tmp / "a").write_text("first")
    with atomic_dir(final) as tmp:
        (tmp / "a").write_text("second")
    assert (final / "a").read_text() == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
