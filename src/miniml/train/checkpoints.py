"""Checkpoints that only count once complete.

The ``transformers`` Trainer writes ``checkpoint-N/`` file by file, so a SIGKILL can leave a partial folder.
After the Trainer has finished writing one, :func:`seal_checkpoint` adds ``miniml-checkpoint.json`` (written
atomically, last) listing every file with its size and sha256. Resuming uses the newest sealed checkpoint,
verifies it against its seal (a mismatch is a clear ModelError, never a silent bad resume) and moves
unsealed, partial folders out of the way.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

from miniml.errors import ModelError
from miniml.io import atomic_write_json

SEAL = "miniml-checkpoint.json"
_NAME = re.compile(r"checkpoint-(\d+)")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != SEAL)


def seal_checkpoint(folder: Path, step: int) -> None:
    """Record every file of a fully written checkpoint; only sealed checkpoints are resumed from."""
    files = {
        str(p.relative_to(folder)): {"bytes": p.stat().st_size, "sha256": _sha256(p)} for p in _files(folder)
    }
    atomic_write_json(folder / SEAL, {"step": step, "files": files})


def verify_checkpoint(folder: Path) -> None:
    """Raise a ModelError if a sealed checkpoint's files are missing or differ from its seal."""
    try:
        recorded = json.loads((folder / SEAL).read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError) as err:
        raise ModelError(f"checkpoint {folder} has an unreadable seal ({type(err).__name__})") from None
    for name, meta in recorded.items():
        path = folder / name
        if not path.is_file() or path.stat().st_size != meta["bytes"] or _sha256(path) != meta["sha256"]:
            raise ModelError(
                f"checkpoint {folder} is corrupted ({name} is missing or changed)",
                hint="delete that checkpoint folder to resume from an earlier one, or train without --resume",
            )


def step_of(folder: Path) -> int:
    match = _NAME.fullmatch(folder.name)
    return int(match.group(1)) if match else -1


def sealed_checkpoints(run_dir: Path) -> list[Path]:
    """Sealed ``checkpoint-N`` folders of a run, oldest first."""
    found = [p for p in run_dir.glob("checkpoint-*") if step_of(p) >= 0 and (p / SEAL).is_file()]
    return sorted(found, key=step_of)


def latest_checkpoint(run_dir: Path) -> Path:
    """The newest complete checkpoint, verified; unsealed (partial) ones are moved aside first."""
    for partial in run_dir.glob("checkpoint-*"):
        if partial.is_dir() and not (partial / SEAL).is_file():
            shutil.rmtree(partial, ignore_errors=True)  # half-written when the run died: worthless
    sealed = sealed_checkpoints(run_dir)
    if not sealed:
        raise ModelError(
            f"no complete checkpoint to resume from in {run_dir}",
            hint="the run died before its first checkpoint; train again without --resume",
        )
    verify_checkpoint(sealed[-1])
    return sealed[-1]
