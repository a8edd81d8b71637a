"""Real shared-store services for tests: PostgreSQL (Debian binaries) and moto's S3-compatible server.

``postgres_server`` starts its own PostgreSQL (initdb + pg_ctl) in a temp folder on a free loopback port, as
the ``postgres`` user when run as root (PostgreSQL refuses to run as root). ``moto_s3`` starts moto's
standalone server (``ThreadedMotoServer``, a real HTTP server speaking the S3 protocol) on loopback;
``moto_s3_with_auth`` runs one in a subprocess with request signing checked against moto's IAM users, for
the wrong-credentials tests. A missing binary or package skips the test with what to install.
"""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

FAKE_KEYS = {"AWS_ACCESS_KEY_ID": "miniml-test", "AWS_SECRET_ACCESS_KEY": "miniml-test-secret"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def as_db_user(cmd: list[str]) -> list[str]:
    """Run ``cmd`` as the ``postgres`` user when we are root."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@contextlib.contextmanager
def postgres_server(database: str = "mlflow") -> Iterator[str]:
    """A throwaway PostgreSQL with an empty ``database``; yields its URI (user ``miniml``, trust auth)."""
    initdb, pg_ctl = pg_bin("initdb"), pg_bin("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl) not found; apt-get install -y postgresql")
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            pytest.skip("running as root needs `runuser` to start PostgreSQL as the postgres user")
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root needs a `postgres` system user (created by the postgresql package)")
    root = Path(tempfile.mkdtemp(prefix="miniml-pg-"))  # under /tmp: reachable by the postgres user
    if os.geteuid() == 0:
        os.chown(root, owner.pw_uid, owner.pw_gid)
    data, port = root / "data", free_port()
    run = {"check": True, "capture_output": True, "timeout": 120}
    subprocess.run(as_db_user([initdb, "-D", str(data), "-U", "miniml", "--auth=trust", "-E", "UTF8"]), **run)
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    start = [pg_ctl, "-D", str(data), "-o", options, "-l", str(root / "server.log"), "-w", "start"]
    subprocess.run(as_db_user(start), **run)
    try:
        create_database(f"postgresql://miniml@127.0.0.1:{port}/postgres", database)
        yield f"postgresql://miniml@127.0.0.1:{port}/{database}"
    finally:
        subprocess.run(as_db_user([pg_ctl, "-D", str(data), "-m", "immediate", "stop"]), **run)
        shutil.rmtree(root, ignore_errors=True)


def create_database(admin_uri: str, name: str) -> str:
    """Create database ``name`` on the server of ``admin_uri``; returns its URI."""
    import psycopg

    with psycopg.connect(admin_uri, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return admin_uri.rsplit("/", 1)[0] + f"/{name}"


@dataclass
class S3Server:
    """A running S3-compatible endpoint and a boto3 client on it (for test setup and inspection)."""

    endpoint: str

    def client(self, **keys: str) -> object:
        import boto3

        creds = {"aws_access_key_id": FAKE_KEYS["AWS_ACCESS_KEY_ID"]}
        creds["aws_secret_access_key"] = FAKE_KEYS["AWS_SECRET_ACCESS_KEY"]
        creds.update(keys)
        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1", **creds)

    def make_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)  # type: ignore[attr-defined]
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)  # type: ignore[attr-defined]
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))

    def multipart_uploads(self, bucket: str) -> list[str]:
        answer = self.client().list_multipart_uploads(Bucket=bucket)  # type: ignore[attr-defined]
        return [u["Key"] for u in answer.get("Uploads", [])]


@contextlib.contextmanager
def moto_s3() -> Iterator[S3Server]:
    """moto's S3 server on a free loopback port, in this process (its buckets live as long as it does)."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError:
        pytest.skip("moto's server is not installed: pip install 'moto[server]' (the dev extra has it)")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request is noise on stderr
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield S3Server(f"http://127.0.0.1:{port}")
    finally:
        server.stop()


@contextlib.contextmanager
def moto_s3_with_auth(tmp: Path) -> Iterator[tuple[S3Server, dict[str, str]]]:
    """moto's server in a subprocess that checks signatures; yields it and a valid key pair.

    moto lets the first ``INITIAL_NO_AUTH_ACTION_COUNT`` requests through unsigned: three set up an IAM
    user with an access key and an allow-all S3 policy; every later request must be signed with that key.
    """
    port = free_port()
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "3"}
    log = (tmp / "moto-auth.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        server = S3Server(f"http://127.0.0.1:{port}")
        wait_for_port(port, proc)
        import boto3

        iam = boto3.client("iam", endpoint_url=server.endpoint, region_name="us-east-1", **_fake_creds())
        iam.create_user(UserName="team")
        key = iam.create_access_key(UserName="team")["AccessKey"]
        allow = {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}
        policy = json.dumps({"Version": "2012-10-17", "Statement": [allow]})
        iam.put_user_policy(UserName="team", PolicyName="s3", PolicyDocument=policy)
        keys = {"AWS_ACCESS_KEY_ID": key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}
        yield server, keys
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def _fake_creds() -> dict[str, str]:
    return {
        "aws_access_key_id": FAKE_KEYS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": FAKE_KEYS["AWS_SECRET_ACCESS_KEY"],
    }


def wait_for_port(port: int, proc: subprocess.Popen[bytes] | None = None, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on port {port} after {timeout}s")


def s3_env(monkeypatch: pytest.MonkeyPatch, endpoint: str, **keys: str) -> None:
    """Point boto3 and MLflow at ``endpoint`` with test credentials, and nothing from ~/.aws."""
    monkeypatch.setenv("MLFLOW_S3_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    for name, value in {**FAKE_KEYS, **keys}.items():
        monkeypatch.setenv(name, value)
