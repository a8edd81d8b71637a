import pytest

from miniml.errors import ModelError
from miniml.train.checkpoints import SEAL, latest_checkpoint, seal_checkpoint, verify_checkpoint


def make(run, step, sealed=True):
    folder = run / f"checkpoint-{step}"
    (folder / "sub").mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"w" * step)
    (folder / "sub" / "state.json").write_text("{}")
    if sealed:
        seal_checkpoint(folder, step)
    return folder


def test_latest_sealed_wins_and_partial_removed(tmp_path) -> None:
    make(tmp_path, 5)
    newest = make(tmp_path, 10)
    partial = make(tmp_path, 15, sealed=False)
    assert latest_checkpoint(tmp_path) == newest
    assert not partial.exists()


def test_corruption_is_detected(tmp_path) -> None:
    folder = make(tmp_path, 5)
    verify_checkpoint(folder)
    (folder / "sub" / "state.json").write_text('{"x": 1}')
    with pytest.raises(ModelError, match="corrupted"):
        latest_checkpoint(tmp_path)
    (folder / SEAL).write_text("not json")
    with pytest.raises(ModelError, match="unreadable seal"):
        verify_checkpoint(folder)


def test_nothing_to_resume(tmp_path) -> None:
    with pytest.raises(ModelError, match="no complete checkpoint"):
        latest_checkpoint(tmp_path)
