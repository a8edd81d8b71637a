"""What went wrong on a Ray worker, as the one ``error:`` line every miniml command ends with.

Ray wraps a worker's exception in layers (``RayTaskError``, Ray Data's ``UserCodeException``, Ray Train's
``TrainingFailedError`` with one failure per rank). :func:`explain` walks them and names the first cause it
knows: a miniml error (its own message), a worker that ran out of memory, a file it could not read, a worker
or node that died; anything else is reported by type and first line.
"""

from __future__ import annotations

from collections.abc import Iterator

from miniml.errors import DataError, MinimlError

OOM_MARKERS = (
    "out of memory",
    "can't allocate memory",
    "cannot allocate memory",
    "killed due to memory pressure",
    "outofmemoryerror",
)
DIED = ("WorkerCrashedError", "ActorDiedError", "NodeDiedError", "ActorUnavailableError", "OwnerDiedError")


class WorkerOutOfMemory(MinimlError):
    """A Ray worker ran out of memory."""


class WorkerFailed(MinimlError):
    """A Ray worker failed for a reason miniml does not know (the message names its type)."""

    exit_code = 1


def causes(err: BaseException) -> Iterator[BaseException]:
    """``err`` and every exception it wraps, outermost first (each once)."""
    seen: set[int] = set()
    todo = [err]
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        failures = getattr(current, "worker_failures", None)  # Ray Train: {rank: exception}
        if isinstance(failures, dict):
            todo.extend(e for e in failures.values() if isinstance(e, BaseException))
        for attr in ("cause", "controller_failure", "__cause__", "__context__"):
            inner = getattr(current, attr, None)
            if isinstance(inner, BaseException):
                todo.append(inner)


def first_line(err: BaseException) -> str:
    for line in str(err).splitlines():
        line = line.strip()
        if line and not line.startswith(("Traceback", "File ", "ray::", "^")):
            return line[:300]
    return type(err).__name__


def is_oom(err: BaseException) -> bool:
    if isinstance(err, MemoryError) or type(err).__name__ == "OutOfMemoryError":
        return True
    text = str(err).lower()
    return any(marker in text for marker in OOM_MARKERS)


def explain(err: BaseException, doing: str) -> MinimlError:
    """The one-line error for ``err``, raised while ``doing`` (``training on Ray`` ...)."""
    chain = list(causes(err))
    for cause in chain:
        if isinstance(cause, MinimlError):
            return cause
    for cause in chain:
        if is_oom(cause):
            return WorkerOutOfMemory(
                f"a Ray worker ran out of memory while {doing} ({first_line(cause)})",
                hint="lower batch_size, give each worker more memory (fewer workers per node), "
                "or use nodes with more memory",
            )
    for cause in chain:
        if isinstance(cause, OSError) or type(cause).__name__ in ("ArrowIOError", "ArrowInvalid"):
            return DataError(
                f"a Ray worker could not read its data while {doing}: {first_line(cause)}",
                hint="every node must see the path: use shared storage, s3:// or `miniml data push`",
            )
    for cause in chain:
        if type(cause).__name__ in DIED:
            return WorkerFailed(
                f"a Ray worker died while {doing} ({first_line(cause)})",
                hint="see `ray logs` or the Ray dashboard for why; --resume continues a training run",
            )
    inner = chain[-1]
    return WorkerFailed(f"a Ray worker failed while {doing}: {type(inner).__name__}: {first_line(inner)}")
