"""The dataset hub: prepared datasets shared through an S3 bucket, by name and fingerprint.

Layout in the bucket (the same as under ``MINIML_HOME/datasets``)::

    s3://BUCKET/PREFIX/NAME/FINGERPRINT/
        train.parquet  validation.parquet  test.parquet
        manifest.json          # written last: a dataset is in the hub once its manifest is

Content-addressed: a fingerprint names one dataset forever, so a push whose manifest is already in the
bucket uploads nothing, and a pull of a dataset already prepared or pulled here downloads nothing. A push
uploads the data files first and the manifest last, and deletes what it uploaded if it fails before the
manifest is written (a failed multipart upload is aborted by the object store). A pull downloads into a
temporary folder, checks every file's size and sha256 against the manifest, and only then renames the
folder into place: a mismatch is an error and leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from pydantic import ValidationError

import miniml.paths as paths
from miniml.data.manifest import MANIFEST, FileRecord, Manifest, file_records, sha256_file
from miniml.errors import DataError
from miniml.io import atomic_dir, atomic_write_bytes
from miniml.objectstore import ObjectStore, S3Location, StoreError, open_store

MAX_MANIFEST_BYTES = 16 * 2**20
_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass(frozen=True)
class Transfer:
    """What a push or pull did: which dataset, where it is now, and whether anything moved."""

    name: str
    fingerprint: str
    uri: str  # s3://BUCKET/PREFIX/NAME/FINGERPRINT
    path: Path  # the local folder
    files: int
    bytes: int
    moved: bool


@dataclass(frozen=True)
class RemoteDataset:
    """One dataset in the hub, as listed."""

    name: str
    fingerprint: str
    uri: str
    files: int
    bytes: int
    pushed: datetime


def is_remote(ref: str | Path) -> bool:
    """Whether a dataset reference names the hub (``s3://...``) rather than a local dataset."""
    return str(ref).startswith("s3://")


def split_remote_ref(uri: str) -> tuple[S3Location, str, str]:
    """``s3://BUCKET/PREFIX/NAME/FINGERPRINT`` → (hub root, name, fingerprint)."""
    location = S3Location.parse(uri)
    parts = location.prefix.split("/") if location.prefix else []
    if len(parts) < 2:
        raise DataError(
            f"{uri!r} does not name a dataset",
            hint="write s3://BUCKET/PREFIX/NAME/FINGERPRINT (see `miniml data list --remote s3://BUCKET/PREFIX`)",
        )
    root = S3Location(location.bucket, "/".join(parts[:-2]))
    return root, check_part(parts[-2], "dataset name"), check_part(parts[-1], "fingerprint")


def check_part(text: str, what: str) -> str:
    if not _PART.match(text):
        raise DataError(f"invalid {what} {text!r}", hint="letters, digits, '.', '_' and '-' only")
    return text


# ---------------------------------------------------------------- push


def push(
    folder: Path,
    remote: str,
    *,
    store: ObjectStore | None = None,
    endpoint: str | None = None,
    profile: str | None = None,
) -> Transfer:
    """Upload the prepared dataset in ``folder`` to the hub at ``remote`` (``s3://BUCKET/PREFIX``)."""
    root = S3Location.parse(remote)
    manifest, data = _local_manifest(Path(folder))
    files = manifest.files
    total = sum(r.bytes for r in files.values())
    store = store or open_store(root, endpoint=endpoint, profile=profile)
    target = root.child(manifest.name, manifest.fingerprint)
    result = Transfer(manifest.name, manifest.fingerprint, target.uri, Path(folder), len(files), total, False)
    store.check()
    if store.exists(target.key(MANIFEST)):
        return result
    uploaded: list[str] = []
    try:
        for name in files:
            store.upload_file(Path(folder) / name, target.key(name))
            uploaded.append(target.key(name))
        store.put_bytes(target.key(MANIFEST), data)
    except BaseException:
        _remove_partial(store, target, uploaded)
        raise
    return Transfer(manifest.name, manifest.fingerprint, target.uri, Path(folder), len(files), total, True)


def _local_manifest(folder: Path) -> tuple[Manifest, bytes]:
    """The folder's manifest with every file's sha256 (computed for old manifests), checked against disk."""
    file = folder / MANIFEST
    manifest = _parse_manifest(file.read_bytes() if file.is_file() else b"", folder)
    on_disk = file_records(folder)
    if not manifest.files:  # written before manifests listed files: describe the folder as it is
        manifest.files = on_disk
        return manifest, manifest.model_dump_json(indent=2).encode("utf-8")
    for name, record in manifest.files.items():
        if on_disk.get(name) != record:
            raise DataError(
                f"{folder / name} does not match the dataset's manifest (missing or changed)",
                hint="prepare the dataset again; a dataset folder must not be edited",
            )
    return manifest, file.read_bytes()


def _remove_partial(store: ObjectStore, target: S3Location, uploaded: list[str]) -> None:
    """Delete this push's data files unless the dataset got complete meanwhile (a concurrent push won)."""
    with contextlib.suppress(StoreError):
        if uploaded and not store.exists(target.key(MANIFEST)):
            store.delete(uploaded)


# ---------------------------------------------------------------- pull


def pull(
    ref: str,
    remote: str | None = None,
    *,
    store: ObjectStore | None = None,
    endpoint: str | None = None,
    profile: str | None = None,
) -> Transfer:
    """Download a dataset from the hub into ``MINIML_HOME/datasets/NAME/FINGERPRINT`` (verified, atomic).

    ``ref`` is ``NAME`` (the most recently pushed fingerprint), ``NAME/FINGERPRINT`` (with ``remote``,
    the hub's ``s3://BUCKET/PREFIX``) or a whole ``s3://BUCKET/PREFIX/NAME/FINGERPRINT``.
    """
    root, name, fingerprint = _pull_target(ref, remote)
    store = store or open_store(root, endpoint=endpoint, profile=profile)
    if fingerprint is None:
        fingerprint = _newest(list_remote(root.uri, store=store), name, root)
    target = root.child(name, fingerprint)
    final = paths.datasets_dir() / name / fingerprint
    if (final / MANIFEST).is_file():
        files = Manifest.model_validate_json((final / MANIFEST).read_bytes()).files
        return Transfer(name, fingerprint, target.uri, final, len(files), _size(files), False)
    store.check()
    if not store.exists(target.key(MANIFEST)):
        raise DataError(
            f"no dataset {name}/{fingerprint} in {root.uri}",
            hint=f"see `miniml data list --remote {root.uri}`, or push it first",
        )
    data = store.read_bytes(target.key(MANIFEST), MAX_MANIFEST_BYTES)
    manifest = _parse_manifest(data, target.uri)
    if (manifest.name, manifest.fingerprint) != (name, fingerprint) or not manifest.files:
        raise DataError(f"{target.uri}/{MANIFEST} does not describe {name}/{fingerprint} (or lists no files)")
    _check_sizes(store, target, manifest.files)
    try:
        with atomic_dir(final) as tmp:
            for file, record in manifest.files.items():
                store.download_file(target.key(file), tmp / file)
                _verify(tmp / file, record, f"{target.uri}/{file}")
            atomic_write_bytes(tmp / MANIFEST, data)
    except BaseException:
        with contextlib.suppress(OSError):  # leave no empty NAME folder behind either
            final.parent.rmdir()
        raise
    return Transfer(name, fingerprint, target.uri, final, len(manifest.files), _size(manifest.files), True)


def _pull_target(ref: str, remote: str | None) -> tuple[S3Location, str, str | None]:
    if is_remote(ref):
        if remote is not None:
            raise DataError(
                "give either s3://.../NAME/FINGERPRINT or NAME[/FINGERPRINT] and s3://BUCKET/PREFIX"
            )
        return split_remote_ref(ref)
    if remote is None:
        raise DataError(f"where is {ref!r}?", hint="add the hub: s3://BUCKET/PREFIX")
    name, _, fingerprint = str(ref).strip("/").partition("/")
    fp = check_part(fingerprint, "fingerprint") if fingerprint else None
    return S3Location.parse(remote), check_part(name, "dataset name"), fp


def _newest(found: list[RemoteDataset], name: str, root: S3Location) -> str:
    mine = sorted((d for d in found if d.name == name), key=lambda d: d.pushed)
    if not mine:
        names = sorted({d.name for d in found})
        raise DataError(
            f"no dataset {name!r} in {root.uri}",
            hint=f"datasets there: {', '.join(names)}" if names else "the hub is empty; push one first",
        )
    return mine[-1].fingerprint


def _check_sizes(store: ObjectStore, target: S3Location, files: dict[str, FileRecord]) -> None:
    """Before downloading anything: every listed file is in the bucket with the size the manifest says."""
    sizes = {obj.key: obj.size for obj in store.list_objects(f"{target.key()}/")}
    for name, record in files.items():
        size = sizes.get(target.key(name))
        if size != record.bytes:
            found = "missing" if size is None else f"{size} bytes"
            raise DataError(
                f"{target.uri}/{name} does not match its manifest: {found} in the bucket, the manifest lists "
                f"{record.bytes} bytes; nothing was written",
                hint="the copy in the bucket is damaged or incomplete: push the dataset again",
            )


def _verify(path: Path, record: FileRecord, source: str) -> None:
    size, digest = path.stat().st_size, sha256_file(path)
    if size != record.bytes or digest != record.sha256:
        raise DataError(
            f"{source} does not match its manifest: {size} bytes with sha256 {digest[:12]}…, the manifest "
            f"lists {record.bytes} bytes with sha256 {record.sha256[:12]}…; nothing was written",
            hint="the copy in the bucket is damaged or was changed: push the dataset again",
        )


def _parse_manifest(data: bytes, where: object) -> Manifest:
    if not data:
        raise DataError(f"{where} is not a prepared dataset (no {MANIFEST})", hint="prepare it first")
    try:
        return Manifest.model_validate_json(data)
    except ValidationError as err:
        raise DataError(f"{where}: {MANIFEST} is not a miniml manifest ({err.errors()[0]['msg']})") from None


def _size(files: dict[str, FileRecord]) -> int:
    return sum(r.bytes for r in files.values())


# ---------------------------------------------------------------- list


def list_remote(
    remote: str,
    *,
    store: ObjectStore | None = None,
    endpoint: str | None = None,
    profile: str | None = None,
) -> list[RemoteDataset]:
    """Every complete dataset (one with a manifest) under ``s3://BUCKET/PREFIX``, by name then push time."""
    root = S3Location.parse(remote)
    store = store or open_store(root, endpoint=endpoint, profile=profile)
    store.check()
    base = f"{root.prefix}/" if root.prefix else ""
    folders: dict[tuple[str, str], list[tuple[str, int, datetime]]] = {}
    for obj in store.list_objects(base):
        parts = obj.key[len(base) :].split("/")
        if len(parts) == 3:
            folders.setdefault((parts[0], parts[1]), []).append((parts[2], obj.size, obj.modified))
    found = []
    for (name, fingerprint), objects in folders.items():
        manifest = next((o for o in objects if o[0] == MANIFEST), None)
        if manifest is None:  # an interrupted push: not a dataset
            continue
        data = [o for o in objects if o[0] != MANIFEST]
        uri = root.child(name, fingerprint).uri
        found.append(RemoteDataset(name, fingerprint, uri, len(data), sum(o[1] for o in data), manifest[2]))
    return sorted(found, key=lambda d: (d.name, d.pushed))
