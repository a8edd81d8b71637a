"""API keys shared through Redis, for replicas that do not share a file system.

One keys file stays the source of truth (it is where ``miniml keys`` writes); ``miniml keys publish --redis
URL`` (or ``--redis`` on ``keys create`` / ``keys revoke``) copies its records to Redis, and every server with
``auth.keys_redis: URL`` follows that copy. Only what the keys file holds travels: names, sha256 hashes,
allowed models and budgets, never a key.

Layout under ``auth.keys_redis_prefix`` (``miniml:keys``): a hash ``PREFIX`` (key name -> the record as
JSON) and a counter ``PREFIX:version``. A publish replaces the whole hash and bumps the counter in one
MULTI/EXEC transaction, so a server reads the old set or the new one, never a mix. A server polls the
counter (one GET) every ``auth.reload_s`` seconds and re-reads the hash when it moved (or on SIGHUP). A
server that cannot reach Redis at start refuses to start; one that loses Redis keeps its last keys and logs
the error, so an outage never opens a server up or locks everyone out.

Written by hand because no library does this narrow job; Redis access is ``redis-py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import ValidationError

from miniml.errors import ConfigError
from miniml.serve.settings import ApiKeyRecord

log = logging.getLogger("miniml.serve")
DEFAULT_PREFIX = "miniml:keys"
TIMEOUT_S = 5.0


def redact(url: str) -> str:
    """``url`` without its password (for messages and logs)."""
    return re.sub(r"//[^@/]*@", "//***@", url)


def _records(raw: dict[Any, Any], where: str) -> list[ApiKeyRecord]:
    try:
        return sorted(
            (ApiKeyRecord.model_validate_json(value) for value in raw.values()), key=lambda r: r.name
        )
    except ValidationError as err:
        raise ConfigError(
            f"the keys in {where} are not valid key records: {err.errors()[0]['msg']}"
        ) from None


def _unreachable(url: str, err: Exception) -> ConfigError:
    return ConfigError(
        f"cannot reach Redis at {redact(url)} for the shared API keys: {err}",
        hint="start Redis or fix the URL (auth.keys_redis / --redis)",
    )


def publish_keys(url: str, records: Sequence[ApiKeyRecord], *, prefix: str = DEFAULT_PREFIX) -> int:
    """Replace the shared keys with ``records`` in one transaction; return the new version."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=TIMEOUT_S, socket_connect_timeout=TIMEOUT_S)
    try:
        with client.pipeline(transaction=True) as pipe:
            pipe.delete(prefix)
            if records:
                pipe.hset(prefix, mapping={r.name: r.model_dump_json(exclude_none=True) for r in records})
            pipe.incr(f"{prefix}:version")
            version = pipe.execute()[-1]
    except redis.RedisError as err:
        raise _unreachable(url, err) from None
    finally:
        client.close()
    return int(version)


def read_shared_keys(url: str, *, prefix: str = DEFAULT_PREFIX) -> tuple[int, list[ApiKeyRecord]]:
    """The shared keys and their version, read together (blocking; used at start-up and by the CLI)."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=TIMEOUT_S, socket_connect_timeout=TIMEOUT_S)
    try:
        with client.pipeline(transaction=True) as pipe:
            pipe.get(f"{prefix}:version")
            pipe.hgetall(prefix)
            version, raw = pipe.execute()
    except redis.RedisError as err:
        raise _unreachable(url, err) from None
    finally:
        client.close()
    return int(version or 0), _records(raw, f"Redis {redact(url)} {prefix}")


class SharedKeysWatcher:
    """Follow the shared keys: poll their version every ``interval_s``; re-read on change or :meth:`wake`.

    ``seen`` is the version read at start-up. ``on_change(records)`` runs on the event loop.
    """

    def __init__(
        self,
        url: str,
        prefix: str,
        interval_s: float,
        seen: int,
        on_change: Callable[[list[ApiKeyRecord]], None],
    ) -> None:
        self.url, self.prefix, self.interval_s = url, prefix, interval_s
        self.seen = seen
        self.on_change = on_change
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._client: Any = None
        self._failing = False

    async def run(self) -> None:
        """Check until cancelled."""
        import redis.asyncio

        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._client = redis.asyncio.Redis.from_url(
            self.url, socket_timeout=TIMEOUT_S, socket_connect_timeout=TIMEOUT_S
        )
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.interval_s)
                forced = self._wake.is_set()
                self._wake.clear()
                await self.check(force=forced)
        finally:
            await self._client.aclose()

    def wake(self) -> None:
        """Re-read now (thread- and signal-safe: SIGHUP calls it)."""
        if self._loop is not None and self._wake is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    async def check(self, *, force: bool = False) -> bool:
        """Re-read the keys if their version moved (or ``force``); return whether new keys were applied."""
        import redis

        try:
            version = int(await self._client.get(f"{self.prefix}:version") or 0)
            if version == self.seen and not force:
                self._recovered()
                return False
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.get(f"{self.prefix}:version")
                pipe.hgetall(self.prefix)
                version, raw = await pipe.execute()
            records = _records(raw, f"Redis {self.prefix}")
        except (redis.RedisError, OSError, ConfigError) as err:
            if not self._failing:
                log.error("shared API keys not reloaded; the previous keys stay in force: %s", err)
            self._failing = True
            return False
        self._recovered()
        self.seen = int(version or 0)
        try:
            self.on_change(records)
        except ConfigError as err:
            log.error("shared API keys not applied; the previous keys stay in force: %s", err)
            return False
        return True

    def _recovered(self) -> None:
        if self._failing:
            log.info("shared API keys reachable again")
        self._failing = False
