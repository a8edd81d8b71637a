"""S3 URIs, endpoint precedence and the one-line errors for boto3 failures (real botocore exceptions)."""

from __future__ import annotations

import pytest
from botocore import exceptions as bx

from miniml.objectstore import S3Location, StoreError, endpoint_url, store_error


def test_parse_and_build_locations() -> None:
    loc = S3Location.parse("s3://team-data/hub/v1/")
    assert (loc.bucket, loc.prefix, loc.uri) == ("team-data", "hub/v1", "s3://team-data/hub/v1")
    assert loc.key("toy", "fp1", "manifest.json") == "hub/v1/toy/fp1/manifest.json"
    assert S3Location.parse("s3://bucket").key("a") == "a"
    assert loc.child("toy").uri == "s3://team-data/hub/v1/toy"


@pytest.mark.parametrize("bad", ["team-data/hub", "s3://", "s3://Upper/x", "s3://a/x", "s3://bkt/../x"])
def test_bad_uris_are_one_line(bad: str) -> None:
    with pytest.raises(StoreError) as info:
        S3Location.parse(bad)
    assert "\n" not in str(info.value) and "s3://" in str(info.value)


def test_endpoint_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_S3_ENDPOINT_URL", raising=False)
    assert endpoint_url() is None  # boto3 resolves AWS_ENDPOINT_URL / the profile itself
    monkeypatch.setenv("MLFLOW_S3_ENDPOINT_URL", "http://minio:9000")
    assert endpoint_url() == "http://minio:9000"
    assert endpoint_url("http://flag:1") == "http://flag:1"


def client_error(code: str) -> bx.ClientError:
    return bx.ClientError({"Error": {"Code": code, "Message": "m"}}, "HeadBucket")


@pytest.mark.parametrize(
    ("err", "key", "expected"),
    [
        (client_error("NoSuchBucket"), "k", "bucket s3://b at http://e does not exist"),
        (client_error("404"), None, "does not exist"),
        (client_error("404"), "a/b", "no object a/b"),
        (client_error("403"), None, "S3 refused the credentials"),
        (client_error("SignatureDoesNotMatch"), "k", "S3 refused the credentials"),
        (client_error("SlowDown"), "k", "S3 error SlowDown"),
        (bx.EndpointConnectionError(endpoint_url="http://e"), None, "cannot reach the S3 endpoint"),
        (bx.NoCredentialsError(), None, "no S3 credentials found"),
    ],
)
def test_boto_errors_become_one_line(err: Exception, key: str | None, expected: str) -> None:
    mapped = store_error(err, "cannot do it", "s3://b at http://e", key)
    assert mapped is not None
    text = str(mapped)
    assert text.startswith("cannot do it: ") and expected in text and "\n" not in text


def test_other_errors_are_not_mapped() -> None:
    assert store_error(ValueError("x"), "w", "s3://b") is None
