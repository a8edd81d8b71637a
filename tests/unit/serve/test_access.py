"""Access control's keys: replaced as a whole on reload, budgets included; auth never silently off."""

from __future__ import annotations

from pathlib import Path

from miniml.serve.auth import add_key, read_keys_file
from miniml.serve.settings import ServeSettings
from miniml.serve.state import ServerState


def test_reloaded_keys_replace_keys_and_budgets(tmp_path: Path) -> None:
    file = tmp_path / "keys.yaml"
    alice = add_key(file, "alice", requests="1/minute")
    state = ServerState(ServeSettings(auth={"keys_file": file}))
    assert state.access.keys.authenticate(alice) is not None
    assert str(state.access.limiter.budgets("alice")[0]) == "1 per 1 minute"
    bob = add_key(file, "bob", requests="9/second")
    file_records = read_keys_file(file)
    state.access.use_keys([r for r in file_records if r.name != "alice"])
    assert state.access.keys.authenticate(alice) is None and state.access.keys.authenticate(bob) is not None
    assert str(state.access.limiter.budgets("bob")[0]) == "9 per 1 second"
    assert state.access.limiter.budgets("alice") == (None, None, None)  # a revoked key's budget is gone too
    state.access.use_keys([])
    assert state.access.keys.enabled  # no keys left: all refused
    assert state.access.keys.authenticate(bob) is None


def test_auth_turns_on_when_a_first_key_appears(tmp_path: Path) -> None:
    file = tmp_path / "keys.yaml"
    file.write_text("keys: []\n")
    state = ServerState(ServeSettings(auth={"keys_file": file}))
    assert not state.access.keys.enabled  # loopback, no keys: open, as before
    key = add_key(file, "first")
    state.access.use_keys(read_keys_file(file))
    assert state.access.keys.enabled and state.access.keys.authenticate(key) is not None
    off = ServerState(ServeSettings(auth={"keys_file": file, "enabled": False}))
    off.access.use_keys(read_keys_file(file))
    assert not off.access.keys.enabled  # explicitly off stays off
