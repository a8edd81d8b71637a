"""API keys: created once, stored hashed, checked in constant time, scoped to models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from miniml.errors import ConfigError
from miniml.serve.auth import (
    KeyStore,
    add_key,
    hash_key,
    presented_key,
    read_keys_file,
    revoke_key,
)
from miniml.serve.settings import ApiKeyRecord, AuthSettings


def test_add_key_stores_only_the_hash(tmp_path: Path) -> None:
    file = tmp_path / "keys.yaml"
    key = add_key(file, "alice", models=["langid"], requests="10/second")
    text = file.read_text()
    assert key.startswith("mk_") and len(key) > 40
    assert key not in text and hash_key(key) in text
    (record,) = read_keys_file(file)
    assert record.name == "alice" and record.models == ["langid"] and record.requests == "10/second"


def test_keys_file_json_and_duplicates_and_revoke(tmp_path: Path) -> None:
    file = tmp_path / "keys.json"
    add_key(file, "a")
    add_key(file, "b")
    assert [r["name"] for r in json.loads(file.read_text())["keys"]] == ["a", "b"]
    with pytest.raises(ConfigError, match="already exists"):
        add_key(file, "a")
    revoke_key(file, "a")
    assert [r.name for r in read_keys_file(file)] == ["b"]
    with pytest.raises(ConfigError, match="no key named 'a'"):
        revoke_key(file, "a")


def test_bad_keys_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        read_keys_file(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("keys:\n  - name: x\n    sha256: not-hex\n")
    with pytest.raises(ConfigError, match=r"keys.*sha256"):
        read_keys_file(bad)
    with pytest.raises(ConfigError, match="not a rate"):
        add_key(tmp_path / "k.yaml", "c", requests="lots")


def test_keystore_authenticates_and_scopes(tmp_path: Path) -> None:
    file = tmp_path / "keys.yaml"
    alice = add_key(file, "alice", models=["langid"])
    root = add_key(file, "root")
    store = KeyStore.from_settings(AuthSettings(keys_file=file))
    assert store.enabled
    a = store.authenticate(alice)
    r = store.authenticate(root)
    assert a is not None and a.name == "alice" and a.allows("langid") and not a.allows("reviews")
    assert r is not None and r.allows("reviews")
    assert store.authenticate(alice + "x") is None
    assert store.authenticate("") is None


def test_env_keys_join_file_keys_and_names_are_unique(tmp_path: Path) -> None:
    record = ApiKeyRecord(name="ci", sha256=hash_key("secret-ci-key"))
    store = KeyStore.from_settings(AuthSettings(keys=[record]))
    found = store.authenticate("secret-ci-key")
    assert found is not None and found.name == "ci"
    with pytest.raises(ConfigError, match="share a name"):
        KeyStore([record, record])


def test_auth_is_off_without_keys_unless_demanded() -> None:
    assert not KeyStore([]).enabled
    with pytest.raises(ConfigError, match="no API key is configured"):
        KeyStore([], enabled=True)


def test_presented_key_from_either_header() -> None:
    assert presented_key({"authorization": "Bearer abc"}) == "abc"
    assert presented_key({"authorization": "bearer  abc "}) == "abc"
    assert presented_key({"x-api-key": "xyz"}) == "xyz"
    assert presented_key({"authorization": "Basic dXNlcg=="}) is None
    assert presented_key({"x-api-key": "  "}) is None
    assert presented_key({}) is None
