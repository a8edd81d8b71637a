"""Fetch catalog files into a content-addressed cache: ``MINIML_HOME/cache/sha256/<hex>``.

Each file is downloaded (httpx, HTTP Range resume) or copied from a mirror folder into ``<hex>.part``, checked
against the catalog's size and sha256, and only then renamed into place, so the cache never holds a partial
or corrupted file under its final name. A mirror (``--mirror`` or ``MINIML_DATA_MIRROR``, read at call time)
replaces the ``https://`` prefix of catalog URLs with a folder or an http(s) base URL.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

import miniml.paths as paths
from miniml.data.catalog import CatalogFile, dataset_files
from miniml.errors import DataError

CHUNK = 1 << 16
ATTEMPTS = 4  # an interrupted transfer is resumed this many times before giving up
TIMEOUT = httpx.Timeout(30.0, connect=10.0)


@dataclass(frozen=True)
class Fetched:
    """A verified file in the cache, and whether this call had to transfer it."""

    file: CatalogFile
    path: Path
    transferred: bool


def cached_path(file: CatalogFile) -> Path:
    """Where ``file`` lives in the cache once verified."""
    return paths.cache_dir() / "sha256" / file.sha256


def fetch(name: str, *, mirror: str | None = None) -> list[Path]:
    """Fetch every file of catalog dataset ``name``; return the cached, verified paths in catalog order."""
    return [r.path for r in fetch_files(dataset_files(name), mirror=mirror)]


def fetch_files(files: list[CatalogFile], *, mirror: str | None = None) -> list[Fetched]:
    """Fetch ``files`` (skipping those already cached) with one progress bar per transfer."""
    if all(_is_cached(f) for f in files):  # offline re-runs need no mirror at all
        return [Fetched(f, cached_path(f), transferred=False) for f in files]
    base = resolve_mirror(mirror)
    with _progress() as progress:
        return [fetch_file(f, base, progress) for f in files]


def _is_cached(file: CatalogFile) -> bool:
    final = cached_path(file)
    return final.is_file() and final.stat().st_size == file.bytes


def resolve_mirror(mirror: str | None) -> str | Path | None:
    """The mirror to use: an http(s) base URL (str), a folder (Path), or None for the real URLs."""
    value = mirror if mirror is not None else os.environ.get("MINIML_DATA_MIRROR", "")
    value = value.strip()
    if not value:
        return None
    if value.startswith(("http://", "https://")):
        return value.rstrip("/")
    folder = Path(value.removeprefix("file://")).expanduser()
    if not folder.is_dir():
        raise DataError(
            f"data mirror folder {folder} does not exist",
            hint="pass --mirror DIR_OR_URL or fix MINIML_DATA_MIRROR",
        )
    return folder


def source_of(file: CatalogFile, mirror: str | Path | None) -> str | Path:
    """The URL or mirror path that ``file`` is read from."""
    rest = file.url.removeprefix("https://")
    if mirror is None:
        return file.url
    if isinstance(mirror, Path):
        return mirror / rest
    return f"{mirror}/{rest}"


def fetch_file(file: CatalogFile, mirror: str | Path | None, progress: Progress) -> Fetched:
    """Make ``file`` present and verified in the cache; transfer it only when missing."""
    final = cached_path(file)
    if _is_cached(file):
        return Fetched(file, final, transferred=False)
    final.parent.mkdir(parents=True, exist_ok=True)
    part = final.with_name(final.name + ".part")
    with _locked(final.with_name(final.name + ".lock")):
        if _is_cached(file):  # another process finished it while we waited
            return Fetched(file, final, transferred=False)
        src = source_of(file, mirror)
        task = progress.add_task(file.name, total=file.bytes)
        if isinstance(src, Path):
            _copy(src, part, file, progress, task)
        else:
            leftover = part.is_file()
            _download(src, part, file, progress, task, via_mirror=mirror is not None)
            if leftover and not _matches(part, file):  # the old .part was bad: start over once
                part.unlink(missing_ok=True)
                _download(src, part, file, progress, task, via_mirror=mirror is not None)
        _verify(part, file, src)
        os.replace(part, final)
    return Fetched(file, final, transferred=True)


def _copy(src: Path, part: Path, file: CatalogFile, progress: Progress, task: TaskID) -> None:
    """Copy a mirror file in chunks (the bar moves; verification happens after)."""
    if not src.is_file():
        raise DataError(
            f"{file.name} is missing from the mirror: {src} does not exist",
            hint="the mirror may be incomplete; use another mirror or unset MINIML_DATA_MIRROR",
        )
    try:
        with src.open("rb") as fin, part.open("wb") as fout:
            while chunk := fin.read(CHUNK):
                fout.write(chunk)
                progress.advance(task, len(chunk))
    except OSError as err:
        part.unlink(missing_ok=True)
        raise DataError(f"cannot copy {src} from the mirror: {err.strerror or err}") from None


def _download(
    url: str, part: Path, file: CatalogFile, progress: Progress, task: TaskID, *, via_mirror: bool
) -> None:
    """Download ``url`` into ``part``, resuming with HTTP Range after an interruption."""
    last: Exception | None = None
    with httpx.Client(timeout=TIMEOUT, follow_redirects=True) as client:
        for _ in range(ATTEMPTS):
            try:
                _download_once(client, url, part, file, progress, task, via_mirror=via_mirror)
                return
            except httpx.ConnectError as err:
                raise DataError(
                    f"cannot connect to {httpx.URL(url).netloc.decode()} for {url}: {_reason(err)}",
                    hint="is the mirror server running? check --mirror / MINIML_DATA_MIRROR"
                    if via_mirror
                    else "check the network connection or set MINIML_DATA_MIRROR",
                ) from None
            except httpx.TransportError as err:  # dropped connection, timeout: resume from the .part
                last = err
    raise DataError(
        f"download of {url} was interrupted {ATTEMPTS} times ({_reason(last)})",
        hint="run the same command again: it resumes from the partial file",
    )


def _download_once(
    client: httpx.Client,
    url: str,
    part: Path,
    file: CatalogFile,
    progress: Progress,
    task: TaskID,
    *,
    via_mirror: bool,
) -> None:
    have = part.stat().st_size if part.is_file() else 0
    if have >= file.bytes:  # a complete (or oversized) leftover: verify it instead of asking for more
        if have == file.bytes:
            return
        part.unlink()
        have = 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    with client.stream("GET", url, headers=headers) as resp:
        if resp.status_code == 416:  # our partial copy is longer than the server's file
            part.unlink(missing_ok=True)
            raise DataError(
                f"{url} is shorter than the {file.bytes} bytes the catalog lists; deleted the partial copy",
                hint="the mirror copy is not the catalog's file; use another mirror",
            )
        _check_status(resp, url, via_mirror=via_mirror)
        resumed = resp.status_code == 206
        if resumed and not resp.headers.get("content-range", "").startswith(f"bytes {have}-"):
            part.unlink(missing_ok=True)  # a range we did not ask for: retry from the start
            raise httpx.RemoteProtocolError(f"unexpected Content-Range {resp.headers.get('content-range')!r}")
        if not resumed:
            have = 0  # the server ignored Range: start over
        progress.update(task, completed=have)
        with part.open("ab" if resumed else "wb") as fh:
            for chunk in resp.iter_bytes(CHUNK):
                have += len(chunk)
                if have > file.bytes:
                    fh.close()
                    part.unlink(missing_ok=True)
                    raise DataError(
                        f"{url} sent more than the {file.bytes} bytes the catalog lists; deleted it",
                        hint="the mirror copy is not the catalog's file; use another mirror",
                    )
                fh.write(chunk)
                progress.advance(task, len(chunk))


def _check_status(resp: httpx.Response, url: str, *, via_mirror: bool) -> None:
    if resp.status_code in (200, 206):
        return
    if resp.status_code == 404:
        raise DataError(
            f"{url} was not found (HTTP 404)",
            hint="the mirror may be incomplete; use another mirror or unset MINIML_DATA_MIRROR"
            if via_mirror
            else "the catalog URL may have moved; set MINIML_DATA_MIRROR to a mirror",
        )
    raise DataError(f"{url} answered HTTP {resp.status_code}", hint="try again later or use a mirror")


def _digest(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _matches(part: Path, file: CatalogFile) -> bool:
    return part.is_file() and part.stat().st_size == file.bytes and _digest(part) == file.sha256


def _verify(part: Path, file: CatalogFile, src: str | Path) -> None:
    """Check size and sha256; a mismatch deletes the file and raises."""
    size = part.stat().st_size if part.is_file() else 0
    digest = _digest(part) if part.is_file() else "(missing)"
    if size == file.bytes and digest == file.sha256:
        return
    part.unlink(missing_ok=True)
    raise DataError(
        f"{src} is corrupted: got {size} bytes with sha256 {digest[:12]}…, the catalog lists "
        f"{file.bytes} bytes with sha256 {file.sha256[:12]}…; the bad copy was deleted",
        hint="the mirror copy differs from the catalog; use another mirror",
    )


def _reason(err: Exception | None) -> str:
    text = str(err) if err is not None else ""
    return text or type(err).__name__


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    """Serialize fetches of the same file across processes (POSIX advisory lock)."""
    try:
        import fcntl
    except ImportError:  # Windows: no cross-process lock; the sha256 check still catches clashes
        yield
        return
    with lock_path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _progress() -> Progress:
    """A download bar on stderr; silent when stderr is not a terminal."""
    console = Console(stderr=True)
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not sys.stderr.isatty(),
        transient=True,
    )
