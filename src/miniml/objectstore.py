"""Object storage: the seam every shared store goes through (S3 and S3-compatible servers).

``ObjectStore`` is a small protocol (check, list_objects, read, write, upload, download, delete) over
one bucket; ``S3Store`` is its real implementation on boto3. Uploads go through boto3's managed
transfer, which splits big files into multipart uploads and aborts the multipart upload when any part
fails, so a failed upload never leaves an object (or stored parts) behind.

Where the endpoint and credentials come from, in order: an explicit argument (``--endpoint-url``,
``--profile``), then ``MLFLOW_S3_ENDPOINT_URL`` (the variable MLflow's S3 artifact store reads, so one
setting serves both), then boto3's own chain: ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``,
``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN``, ``AWS_PROFILE`` and the shared
``~/.aws`` files. miniml never logs or writes credentials; error lines name the bucket and endpoint only.

Every S3 failure becomes one ``StoreError`` line saying what failed and how to fix it
(:func:`store_error`); boto3 is imported only when a store is used.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from miniml.errors import MinimlError

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
MAX_ATTEMPTS = 3  # boto3 "standard" retries: transient errors only, with backoff
CONNECT_TIMEOUT_S = 5


class StoreError(MinimlError):
    """The object store refused or could not be reached (endpoint, bucket, credentials, a corrupt object)."""


@dataclass(frozen=True)
class S3Location:
    """``s3://BUCKET/PREFIX`` split into bucket and key prefix (no leading or trailing slash)."""

    bucket: str
    prefix: str = ""

    @classmethod
    def parse(cls, uri: str) -> S3Location:
        """Parse ``s3://bucket[/prefix]``; anything else is a StoreError saying what is expected."""
        text = str(uri).strip()
        if not text.startswith("s3://"):
            raise StoreError(f"{text!r} is not an S3 URI", hint="write s3://BUCKET/PREFIX")
        bucket, _, prefix = text[len("s3://") :].partition("/")
        if not _BUCKET.match(bucket):
            raise StoreError(
                f"invalid bucket name {bucket!r} in {text!r}",
                hint="3-63 lowercase letters, digits, dots or hyphens",
            )
        parts = [p for p in prefix.split("/") if p]
        if any(p in {".", ".."} for p in parts):
            raise StoreError(f"{text!r} has '.' or '..' in its path", hint="write s3://BUCKET/PREFIX")
        return cls(bucket, "/".join(parts))

    def key(self, *parts: str) -> str:
        """The object key of ``parts`` under this prefix."""
        return "/".join(p.strip("/") for p in (self.prefix, *parts) if p.strip("/"))

    def child(self, *parts: str) -> S3Location:
        return S3Location(self.bucket, self.key(*parts))

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    def __str__(self) -> str:
        return self.uri


@dataclass(frozen=True)
class ObjectInfo:
    """One stored object: key, size in bytes, last modified."""

    key: str
    size: int
    modified: datetime


Progress = Callable[[int], None]  # called with the bytes moved since the last call


class ObjectStore(Protocol):
    """One bucket of an object store."""

    bucket: str

    def check(self) -> None:
        """Raise StoreError unless the bucket exists and the credentials may use it."""

    def exists(self, key: str) -> bool: ...

    def list_objects(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix``, in key order."""

    def read_bytes(self, key: str, limit: int) -> bytes:
        """A small object's bytes; larger than ``limit`` is a StoreError."""

    def put_bytes(self, key: str, data: bytes) -> None: ...

    def upload_file(self, path: Path, key: str, progress: Progress | None = None) -> None:
        """Upload a file (multipart when large; a failed multipart upload is aborted)."""

    def download_file(self, key: str, path: Path, progress: Progress | None = None) -> None: ...

    def delete(self, keys: list[str]) -> None: ...


def endpoint_url(explicit: str | None = None) -> str | None:
    """The S3 endpoint: ``explicit``, else ``MLFLOW_S3_ENDPOINT_URL``, else None (boto3's own settings)."""
    return (explicit or os.environ.get("MLFLOW_S3_ENDPOINT_URL", "")).strip() or None


class S3Store:
    """``ObjectStore`` on boto3 for one bucket; ``endpoint``/``profile`` override the environment."""

    def __init__(
        self,
        bucket: str,
        *,
        endpoint: str | None = None,
        profile: str | None = None,
        multipart_threshold: int = 64 * 2**20,
        part_size: int = 16 * 2**20,
    ) -> None:
        self.bucket = bucket
        self.endpoint = endpoint_url(endpoint)
        self._profile = profile
        self._multipart = (multipart_threshold, part_size)
        self._client: Any = None

    @property
    def where(self) -> str:
        """``s3://bucket`` plus the endpoint, for error lines (never credentials)."""
        return f"s3://{self.bucket}" + (f" at {self.endpoint}" if self.endpoint else "")

    @property
    def client(self) -> Any:
        if self._client is None:
            try:
                import boto3
                from botocore.config import Config
            except ImportError:
                raise StoreError(
                    "S3 support is not installed", hint="pip install 'miniml[s3]' (boto3)"
                ) from None
            with self.errors("cannot set up the S3 client"):
                session = boto3.session.Session(profile_name=self._profile)
                config = Config(
                    retries={"max_attempts": MAX_ATTEMPTS, "mode": "standard"},
                    connect_timeout=CONNECT_TIMEOUT_S,
                    read_timeout=60,
                )
                self._client = session.client("s3", endpoint_url=self.endpoint, config=config)
        return self._client

    @contextmanager
    def errors(self, what: str, key: str | None = None) -> Iterator[None]:
        """Turn a boto3 failure inside the block into one StoreError line naming ``what``."""
        try:
            yield
        except StoreError:
            raise
        except OSError as err:  # the local side: a file that cannot be read or written
            raise StoreError(
                f"{what}: {err.strerror or err}", hint=f"check {err.filename or 'the disk'}"
            ) from None
        except Exception as err:
            mapped = store_error(err, what, self.where, key)
            if mapped is None:
                raise
            raise mapped from None

    def check(self) -> None:
        with self.errors("cannot open the bucket"):
            self.client.head_bucket(Bucket=self.bucket)

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        with self.errors(f"cannot look up {key}", key):
            try:
                self.client.head_object(Bucket=self.bucket, Key=key)
            except ClientError as err:
                if _code(err) in {"404", "NoSuchKey"}:
                    return False
                raise
        return True

    def list_objects(self, prefix: str) -> Iterator[ObjectInfo]:
        with self.errors(f"cannot list {prefix or '/'}"):
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
            for page in pages:
                for item in page.get("Contents", []):
                    yield ObjectInfo(str(item["Key"]), int(item["Size"]), item["LastModified"])

    def read_bytes(self, key: str, limit: int) -> bytes:
        with self.errors(f"cannot read {key}", key):
            answer = self.client.get_object(Bucket=self.bucket, Key=key)
            if int(answer.get("ContentLength", 0)) > limit:
                answer["Body"].close()
                raise StoreError(f"s3://{self.bucket}/{key} is larger than {limit} bytes")
            return bytes(answer["Body"].read())

    def put_bytes(self, key: str, data: bytes) -> None:
        with self.errors(f"cannot write {key}", key):
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data)

    def upload_file(self, path: Path, key: str, progress: Progress | None = None) -> None:
        with self.errors(f"cannot upload {Path(path).name}", key):
            self.client.upload_file(str(path), self.bucket, key, Config=self._transfer(), Callback=progress)

    def download_file(self, key: str, path: Path, progress: Progress | None = None) -> None:
        with self.errors(f"cannot download {key}", key):
            self.client.download_file(self.bucket, key, str(path), Config=self._transfer(), Callback=progress)

    def delete(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):  # DeleteObjects takes at most 1,000 keys
            batch = [{"Key": k} for k in keys[start : start + 1000]]
            with self.errors("cannot delete objects"):
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})

    def _transfer(self) -> Any:
        from boto3.s3.transfer import TransferConfig

        threshold, part = self._multipart
        return TransferConfig(multipart_threshold=threshold, multipart_chunksize=part, max_concurrency=4)


def open_store(location: S3Location, *, endpoint: str | None = None, profile: str | None = None) -> S3Store:
    """The store holding ``location``'s bucket."""
    return S3Store(location.bucket, endpoint=endpoint, profile=profile)


# ---------------------------------------------------------------- errors

_CREDENTIAL_CODES = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidToken",
    "ExpiredToken",
    "AccessDenied",
    "AuthorizationHeaderMalformed",
    "InvalidClientTokenId",
    "403",
}
_FIX_CREDENTIALS = "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or AWS_PROFILE, and the bucket's policy"
_FIX_ENDPOINT = "is the server running? check --endpoint-url, MLFLOW_S3_ENDPOINT_URL or AWS_ENDPOINT_URL"


def _code(err: BaseException) -> str:
    return str(getattr(err, "response", {}).get("Error", {}).get("Code", ""))


def _from_boto(err: BaseException) -> bool:
    return type(err).__module__.startswith(("botocore", "boto3", "s3transfer"))


def _cause(err: BaseException) -> BaseException:
    """The botocore error under a boto3 wrapper (``S3UploadFailedError`` keeps it as its context)."""
    while type(err).__module__.startswith("boto3"):
        inner = err.__cause__ or err.__context__
        if inner is None or not _from_boto(inner):
            break
        err = inner
    return err


def store_error(err: BaseException, what: str, where: str, key: str | None = None) -> StoreError | None:
    """One StoreError line for a boto3/botocore failure, or None if ``err`` did not come from boto3."""
    if not _from_boto(err):
        return None
    from botocore import exceptions as bx

    err = _cause(err)
    if isinstance(err, bx.NoCredentialsError | bx.PartialCredentialsError):
        return StoreError(f"{what}: no S3 credentials found for {where}", hint=_FIX_CREDENTIALS)
    if isinstance(err, bx.ProfileNotFound):
        return StoreError(f"{what}: {err}", hint="check --profile / AWS_PROFILE and ~/.aws/config")
    if isinstance(err, bx.EndpointConnectionError | bx.ConnectTimeoutError | bx.ConnectionClosedError):
        return StoreError(f"{what}: cannot reach the S3 endpoint for {where}", hint=_FIX_ENDPOINT)
    if isinstance(err, bx.ClientError):
        code = _code(err)
        if code == "NoSuchBucket" or (code == "404" and key is None):
            return StoreError(
                f"{what}: bucket {where} does not exist",
                hint="create it, or check the bucket name and the endpoint",
            )
        if code in _CREDENTIAL_CODES:
            refused = f"{what}: S3 refused the credentials for {where} ({code})"
            return StoreError(refused, hint=_FIX_CREDENTIALS)
        if code in {"404", "NoSuchKey"}:
            return StoreError(f"{what}: no object {key} in {where}")
        message = str(err.response.get("Error", {}).get("Message", "")) or str(err)
        return StoreError(f"{what}: S3 error {code} in {where}: {message[:200]}")
    failed = f"{what}: {type(err).__name__} talking to {where}: {str(err)[:200]}"
    return StoreError(failed, hint=_FIX_ENDPOINT)
