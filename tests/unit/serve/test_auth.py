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


def test_keys_file_errors_name_line_and_column(tmp_path: Path) -> None:
    bad = tmp_path / "keys.yaml"
    bad.write_text("keys:\n  - name: a\n    sha256: [x\n")
    with pytest.raises(ConfigError, match=r"keys file .*keys.yaml is not valid YAML at line 4, column 1"):
        read_keys_file(bad)
    bad_json = tmp_path / "keys.json"
    bad_json.write_text('{"keys": [\n  {"name": "a",}\n]}')
    with pytest.raises(ConfigError, match=r"not valid JSON at line 2, column 16"):
        read_keys_file(bad_json)
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ConfigError, match="nested too deeply"):
        read_keys_file(deep)


def test_a_non_loopback_host_needs_keys_unless_auth_is_off_explicitly(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"serving on 0\.0\.0\.0 .* without API keys.*auth.enabled: false"):
        KeyStore.from_settings(AuthSettings(), host="0.0.0.0")
    assert not KeyStore.from_settings(AuthSettings(enabled=False), host="0.0.0.0").enabled
    for loopback in ("127.0.0.1", "::1", "localhost", "127.0.0.2"):
        assert not KeyStore.from_settings(AuthSettings(), host=loopback).enabled
    add_key(tmp_path / "k.yaml", "a")
    assert KeyStore.from_settings(AuthSettings(keys_file=tmp_path / "k.yaml"), host="10.1.2.3").enabled


def test_an_enabled_store_may_lose_every_key_on_reload() -> None:
    store = KeyStore([], enabled=True, allow_empty=True)
    assert store.enabled and store.authenticate("anything") is None


@pytest.mark.anyio
async def test_watcher_applies_changes_and_keeps_keys_when_the_file_breaks(tmp_path: Path) -> None:
    import asyncio

    from miniml.serve.auth import KeysWatcher

    file = tmp_path / "keys.yaml"
    add_key(file, "alice")
    seen: list[list[str]] = []
    watcher = KeysWatcher(file, 0.01, lambda records: seen.append([r.name for r in records]))
    assert not await watcher.check()  # unchanged since the watcher was made
    add_key(file, "bob")
    assert await watcher.check() and seen[-1] == ["alice", "bob"]
    assert not await watcher.check()
    file.write_text("keys: [")
    assert not await watcher.check() and len(seen) == 1  # broken: nothing applied
    revoke = file.with_name("good.yaml")
    add_key(revoke, "carol")
    revoke.replace(file)  # an atomic rename: a new inode
    assert await watcher.check() and seen[-1] == ["carol"]
    task = asyncio.create_task(watcher.run())
    await asyncio.sleep(0.05)
    watcher.wake()  # SIGHUP: re-read even when nothing changed
    for _ in range(500):  # up to 5 s on a loaded machine
        if len(seen) == 3:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    assert seen[-1] == ["carol"] and len(seen) == 3
