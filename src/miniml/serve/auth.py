"""API keys: generated once, stored only as sha256 hashes, checked in constant time.

Why plain sha256 and not scrypt/pbkdf2: slow salted hashes protect *low-entropy* secrets (passwords) from
guessing after a leak of the hash file. Our keys are 256 random bits (``secrets.token_urlsafe(32)``), so
guessing one from its sha256 is as hard as guessing the key itself; a fast hash also keeps authentication
off the request latency (~1 µs). This is the usual practice for API tokens.

The keys file (YAML or JSON) holds ``{"keys": [{"name", "sha256", "models", "requests", "chars",
"tokens"}]}``; ``miniml keys create NAME --file FILE`` prints a new key once and appends only its hash.

A running server follows the file (:class:`KeysWatcher`): it checks the file's inode, size and mtime every
``auth.reload_s`` seconds (2 by default) and re-reads it on SIGHUP, so ``miniml keys revoke`` (and new keys,
changed models or budgets) take effect within that interval, without a restart. Replicas on several hosts
share the keys by sharing the file (a mounted volume or config map) or through Redis (``auth.keys_redis``,
:mod:`miniml.serve.sharedkeys`). A file that no longer parses keeps the
previous keys and logs an error (an atomic writer such as ``miniml keys`` never leaves one behind); a
server that started with keys never opens up when the last key is revoked: every request is then a 401.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import os
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from miniml.config import parse_yaml
from miniml.errors import ConfigError, MinimlError
from miniml.io import atomic_write_text
from miniml.serve.settings import ApiKeyRecord, AuthSettings

log = logging.getLogger("miniml.serve")
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
    data = _parse_json(text, path) if Path(path).suffix == ".json" else parse_yaml(text, f"keys file {path}")
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


def _parse_json(text: str, path: Path) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(
            f"keys file {path} is not valid JSON at line {err.lineno}, column {err.colno}: {err.msg}"
        ) from None
    except RecursionError:
        raise ConfigError(f"keys file {path} is nested too deeply to be a keys file") from None


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
    tokens: str | None = None,
    admin: bool = False,
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
            name=name,
            sha256=hash_key(key),
            models=list(models),
            requests=requests,
            chars=chars,
            tokens=tokens,
            admin=admin or None,  # not written into the keys file unless set
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
    """The configured keys; :meth:`authenticate` finds the record of a presented key.

    ``enabled=None`` turns auth on when there is any key. An enabled store needs keys at start
    (``allow_empty`` is for reloads: revoking every key then refuses every request).
    """

    def __init__(
        self, records: Iterable[ApiKeyRecord], *, enabled: bool | None = None, allow_empty: bool = False
    ) -> None:
        self.records = list(records)
        names = [r.name for r in self.records]
        if len(set(names)) != len(names):
            raise ConfigError("two API keys share a name; key names must be unique")
        self.enabled = bool(self.records) if enabled is None else enabled
        if self.enabled and not self.records and not allow_empty:
            raise ConfigError(
                "auth.enabled is true but no API key is configured",
                hint="set auth.keys_file (create keys with `miniml keys create`) or auth.keys",
            )
        self._digests = [(bytes.fromhex(r.sha256), r) for r in self.records]
        self.from_file: list[ApiKeyRecord] = []  # where the records came from, for reloads of one source
        self.from_redis: list[ApiKeyRecord] = []

    @classmethod
    def from_settings(
        cls, settings: AuthSettings, *, host: str = "127.0.0.1", shared: Sequence[ApiKeyRecord] = ()
    ) -> KeyStore:
        """Keys from ``keys_file``, the ``shared`` ones (from ``auth.keys_redis``) and ``keys`` (which the
        environment can set).

        Listening on a non-loopback ``host`` requires keys unless ``auth.enabled`` is explicitly false.
        """
        from_file = read_keys_file(settings.keys_file) if settings.keys_file else []
        records = [*from_file, *shared, *settings.keys]
        if settings.enabled is None and not records and not is_loopback(host):
            raise ConfigError(
                f"serving on {host} (reachable from other machines) without API keys",
                hint="create keys with `miniml keys create NAME --file keys.yaml` and set auth.keys_file, "
                "or set auth.enabled: false to serve without keys on purpose",
            )
        store = cls(records, enabled=settings.enabled)
        store.from_file, store.from_redis = from_file, list(shared)
        return store

    def authenticate(self, key: str) -> ApiKeyRecord | None:
        """The record whose hash matches ``key``, comparing against every record in constant time."""
        digest = hashlib.sha256(key.encode("utf-8")).digest()
        found = None
        for stored, record in self._digests:  # no early exit: time does not depend on which key matched
            if hmac.compare_digest(digest, stored):
                found = record
        return found


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address or ``localhost`` (reachable from this machine only)."""
    import ipaddress

    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


FileSignature = tuple[int, int, int, int]  # device, inode, size, mtime (ns)


def file_signature(path: Path) -> FileSignature | None:
    """What changes when a file is rewritten in place or replaced by a rename (None: missing)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class KeysWatcher:
    """Follow a keys file: poll its signature every ``interval_s``; re-read on change or :meth:`wake`.

    ``on_change(records)`` gets the new file's records on the event loop. A file that cannot be read or
    parsed keeps the previous keys: the error is logged once per distinct change.
    """

    def __init__(
        self, path: Path, interval_s: float, on_change: Callable[[list[ApiKeyRecord]], None]
    ) -> None:
        self.path = Path(path)
        self.interval_s = interval_s
        self.on_change = on_change
        self._seen = file_signature(self.path)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None

    async def run(self) -> None:
        """Check until cancelled."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval_s)
            forced = self._wake.is_set()  # read here: a wake-up racing the timeout is not lost
            self._wake.clear()
            await self.check(force=forced)

    def wake(self) -> None:
        """Re-read now (thread- and signal-safe: SIGHUP calls it)."""
        if self._loop is not None and self._wake is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    async def check(self, *, force: bool = False) -> bool:
        """Re-read the file if it changed (or ``force``); return whether new keys were applied."""
        signature = file_signature(self.path)
        if signature == self._seen and not force:
            return False
        self._seen = signature
        try:
            records = await asyncio.to_thread(read_keys_file, self.path)
            self.on_change(records)
        except MinimlError as err:
            log.error("keys file not reloaded; the previous keys stay in force: %s", err)
            return False
        return True


def presented_key(headers: Mapping[str, Any]) -> str | None:
    """The key sent as ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``, if any."""
    auth = headers.get("authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return str(value.strip())
    key = headers.get("x-api-key")
    return str(key).strip() or None if key else None
