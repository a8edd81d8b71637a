"""API keys: generated once, stored only as sha256 hashes, checked in constant time.

Why plain sha256 and not scrypt/pbkdf2: slow salted hashes protect *low-entropy* secrets (passwords) from
guessing after a leak of the hash file. Our keys are 256 random bits (``secrets.token_urlsafe(32)``), so
guessing one from its sha256 is as hard as guessing the key itself; a fast hash also keeps authentication
off the request latency (~1 µs). This is the usual practice for API tokens.

The keys file (YAML or JSON) holds ``{"keys": [{"name", "sha256", "models", "requests", "chars"}]}``;
``miniml keys create NAME --file FILE`` prints a new key once and appends only its hash.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from miniml.errors import ConfigError
from miniml.io import atomic_write_text
from miniml.serve.settings import ApiKeyRecord, AuthSettings

KEY_PREFIX = "mk_"


def generate_key() -> str:
    """A new random API key (256 bits of entropy)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """The hex sha256 stored for ``key``."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def read_keys_file(path: Path) -> list[ApiKeyRecord]:
    """Read a keys file; a clear ConfigError if it is missing, unparsable or invalid."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"keys file {path} does not exist", hint="create one with `miniml keys create NAME --file PATH`"
        ) from None
    try:
        data = json.loads(text) if Path(path).suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as err:
        raise ConfigError(f"keys file {path} cannot be parsed: {str(err).splitlines()[0]}") from None
    data = data or {}
    entries = data.get("keys", []) if isinstance(data, Mapping) else None
    if not isinstance(entries, list):
        raise ConfigError(f"keys file {path} must hold a mapping with a 'keys' list")
    try:
        return [ApiKeyRecord.model_validate(entry) for entry in entries]
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"keys file {path}: {where}: {first['msg']}") from None


def write_keys_file(path: Path, records: Sequence[ApiKeyRecord]) -> None:
    """Write ``records`` atomically (JSON for ``.json`` files, YAML otherwise)."""
    data = {"keys": [r.model_dump(exclude_none=True) for r in records]}
    if Path(path).suffix == ".json":
        text = json.dumps(data, indent=2) + "\n"
    else:
        text = "# miniml API keys: only sha256 hashes are stored here.\n" + yaml.safe_dump(
            data, sort_keys=False
        )
    atomic_write_text(Path(path), text)


def add_key(
    path: Path,
    name: str,
    *,
    models: Sequence[str] = ("*",),
    requests: str | None = None,
    chars: str | None = None,
) -> str:
    """Create a key named ``name`` in the keys file at ``path`` (created if missing); return the key."""
    records = read_keys_file(path) if Path(path).exists() else []
    if any(r.name == name for r in records):
        raise ConfigError(
            f"a key named {name!r} already exists in {path}", hint="pick another name or revoke it first"
        )
    key = generate_key()
    try:
        record = ApiKeyRecord(
            name=name, sha256=hash_key(key), models=list(models), requests=requests, chars=chars
        )
    except ValidationError as err:
        first = err.errors()[0]
        raise ConfigError(f"invalid key {first['loc'][0]}: {first['msg']}") from None
    write_keys_file(path, [*records, record])
    return key


def revoke_key(path: Path, name: str) -> None:
    """Remove the key named ``name`` from the keys file."""
    records = read_keys_file(path)
    kept = [r for r in records if r.name != name]
    if len(kept) == len(records):
        raise ConfigError(
            f"no key named {name!r} in {path}", hint="`miniml keys list --file PATH` shows them"
        )
    write_keys_file(path, kept)


class KeyStore:
    """The configured keys; :meth:`authenticate` finds the record of a presented key."""

    def __init__(self, records: Iterable[ApiKeyRecord], *, enabled: bool | None = None) -> None:
        self.records = list(records)
        names = [r.name for r in self.records]
        if len(set(names)) != len(names):
            raise ConfigError("two API keys share a name; key names must be unique")
        self.enabled = bool(self.records) if enabled is None else enabled
        if self.enabled and not self.records:
            raise ConfigError(
                "auth.enabled is true but no API key is configured",
                hint="set auth.keys_file (create keys with `miniml keys create`) or auth.keys",
            )
        self._digests = [(bytes.fromhex(r.sha256), r) for r in self.records]

    @classmethod
    def from_settings(cls, settings: AuthSettings) -> KeyStore:
        """Keys from ``keys_file`` plus ``keys`` (which the environment can set)."""
        records = read_keys_file(settings.keys_file) if settings.keys_file else []
        return cls([*records, *settings.keys], enabled=settings.enabled)

    def authenticate(self, key: str) -> ApiKeyRecord | None:
        """The record whose hash matches ``key``, comparing against every record in constant time."""
        digest = hashlib.sha256(key.encode("utf-8")).digest()
        found = None
        for stored, record in self._digests:  # no early exit: time does not depend on which key matched
            if hmac.compare_digest(digest, stored):
                found = record
        return found


def presented_key(headers: Mapping[str, Any]) -> str | None:
    """The key sent as ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``, if any."""
    auth = headers.get("authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return str(value.strip())
    key = headers.get("x-api-key")
    return str(key).strip() or None if key else None
