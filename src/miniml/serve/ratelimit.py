"""Per-key rate limits (requests, input characters and generated tokens per window) with ``limits``.

Budgets come from the key's record (``requests``, ``chars``, ``tokens``) or the ``ratelimit`` defaults.
Storage is ``memory://`` (one server process) or ``redis://...`` (shared by replicas). The default
strategy, a sliding window counter, costs O(1) per hit even for budgets in the millions (a moving window
would store one timestamp per unit). If the storage fails the request is let through with a warning: a
broken Redis must not take the API down.

Token budgets count prompt + generated tokens. A generation request reserves its prompt tokens plus its
``max_new_tokens`` per row up front (429 when that does not fit); when it ends, the unused part goes back
(``refund_tokens``: the counter of the current window is lowered, never below zero). ``headers`` gives the
OpenAI-style ``x-ratelimit-*`` headers of a key.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import limits
import limits.storage
from limits.aio import strategies
from limits.aio.storage import Storage

from miniml.serve.errors import HTTPProblem
from miniml.serve.logs import ThrottledWarning
from miniml.serve.settings import ApiKeyRecord, RateLimitSettings

log = logging.getLogger("miniml.serve")

STRATEGIES: dict[str, type[strategies.RateLimiter]] = {
    "fixed-window": strategies.FixedWindowRateLimiter,
    "sliding-window-counter": strategies.SlidingWindowCounterRateLimiter,
    "moving-window": strategies.MovingWindowRateLimiter,
}


class RateLimited(HTTPProblem):
    """A key spent its budget (429 + Retry-After)."""

    def __init__(self, who: str, budget: str, limit: limits.RateLimitItem, retry_after: int) -> None:
        super().__init__(
            429,
            "rate_limited",
            f"key {who!r} exceeded its {budget} budget of {limit}; retry after {retry_after}s",
            headers={"Retry-After": str(retry_after)},
            budget=budget,
            limit=str(limit),
            retry_after=retry_after,
        )
        self.who = who
        self.budget = budget


def current_window_key(storage: Storage, key: str, expiry: int) -> str:
    """The counter a sliding-window-counter strategy is adding to now (each storage names it its way)."""
    named: Any = getattr(storage, "_current_window_key", None)  # redis: a per-window key of its own
    if named is not None:
        return str(named(key))
    keys: Any = getattr(storage, "sliding_window_keys", None)  # memory: (previous, current)
    return str(keys(key, expiry, time.time())[1]) if keys is not None else key


def parse_rate(text: str | None) -> limits.RateLimitItem | None:
    return limits.parse(text) if text else None


def sliding_window_wait(
    previous: int,
    previous_ttl: float,
    current: int,
    current_ttl: float,
    *,
    expiry: int,
    limit: int,
    cost: int,
) -> float:
    """Seconds until a sliding window counter admits ``cost`` (see ``seconds_until_admitted``).

    ``previous_ttl`` is how long the previous window still weighs; the current window ends in
    ``current_ttl - expiry`` seconds (both storages keep its counter for two windows), after which the
    current count becomes the previous one and decays in turn.
    """
    room = limit - cost + 1  # admitted while the weighted count is below this
    if current < room:  # this window can admit it once enough of the previous one has decayed
        if previous == 0:
            return 0.0
        return max(0.0, previous_ttl - (room - current) * expiry / previous)
    window_left = current_ttl - expiry if current_ttl > expiry else previous_ttl
    return max(0.0, window_left) + expiry * (1 - room / current)


Budgets = tuple[limits.RateLimitItem | None, limits.RateLimitItem | None, limits.RateLimitItem | None]


class RateLimiter:
    """Checks and spends budgets; one instance per server."""

    def __init__(self, settings: RateLimitSettings) -> None:
        options = {"implementation": "redispy"} if settings.storage.startswith("redis") else {}
        self.storage: Storage = limits.storage.storage_from_string(  # type: ignore[assignment]
            "async+" + settings.storage, **options
        )
        self.strategy = STRATEGIES[settings.strategy](self.storage)
        self.sliding = settings.strategy == "sliding-window-counter"
        self.default_requests = parse_rate(settings.requests)
        self.default_chars = parse_rate(settings.chars)
        self.default_tokens = parse_rate(settings.tokens)
        self._budgets: dict[str, Budgets] = {}
        self._warning = ThrottledWarning(log, "rate-limit storage unavailable, not limiting: %s")

    @property
    def active(self) -> bool:
        """Whether any budget can apply (else the request path skips the limiter entirely)."""
        defaults = (self.default_requests, self.default_chars, self.default_tokens)
        return any(d is not None for d in defaults) or bool(self._budgets)

    def register(self, records: list[ApiKeyRecord]) -> None:
        """Use the per-key budgets of ``records`` (replacing those of earlier keys: a reload)."""
        self._budgets = {
            r.name: (
                parse_rate(r.requests) or self.default_requests,
                parse_rate(r.chars) or self.default_chars,
                parse_rate(r.tokens) or self.default_tokens,
            )
            for r in records
        }

    def budgets(self, who: str) -> Budgets:
        """(requests, chars, tokens) budgets of a key name or anonymous client."""
        return self._budgets.get(who) or (self.default_requests, self.default_chars, self.default_tokens)

    async def spend_request(self, who: str) -> None:
        """Count one request for ``who``; raise :class:`RateLimited` when over budget."""
        item = self.budgets(who)[0]
        if item is not None:
            await self._spend(who, "requests", item, 1)

    async def spend_chars(self, who: str, chars: int) -> None:
        """Count ``chars`` input characters for ``who``; raise :class:`RateLimited` when over budget."""
        item = self.budgets(who)[1]
        if item is not None and chars > 0:
            await self._spend(who, "chars", item, chars)

    async def spend_tokens(self, who: str, tokens: int) -> int:
        """Reserve ``tokens`` (prompt + max new tokens) for ``who``; RateLimited when over budget.
        Returns what was reserved (0 without a token budget), for ``refund_tokens``."""
        item = self.budgets(who)[2]
        if item is None or tokens <= 0:
            return 0
        await self._spend(who, "tokens", item, tokens)
        return tokens

    async def refund_tokens(self, who: str, tokens: int) -> None:
        """Give back ``tokens`` of a reservation that were not used (never below zero in the window)."""
        item = self.budgets(who)[2]
        if item is None or tokens <= 0:
            return
        key = item.key_for("miniml", "tokens", who)
        if self.sliding:
            key = current_window_key(self.storage, key, item.get_expiry())
        try:
            back = min(tokens, int(await self.storage.get(key)))
            if back > 0:
                await self.storage.incr(key, item.get_expiry(), amount=-back)
        except Exception as err:  # storage down: the reservation simply stays spent
            self._warning.warn(err)

    async def headers(self, who: str) -> dict[str, str]:
        """``x-ratelimit-{limit,remaining,reset}-{requests,tokens}`` for the budgets ``who`` has."""
        out: dict[str, str] = {}
        requests_item, _, tokens_item = self.budgets(who)
        for name, item in (("requests", requests_item), ("tokens", tokens_item)):
            if item is None:
                continue
            try:
                stats = await self.strategy.get_window_stats(item, "miniml", name, who)
            except Exception as err:
                self._warning.warn(err)
                continue
            out[f"x-ratelimit-limit-{name}"] = str(item.amount)
            out[f"x-ratelimit-remaining-{name}"] = str(max(0, int(stats.remaining)))
            out[f"x-ratelimit-reset-{name}"] = f"{max(0.0, stats.reset_time - time.time()):.0f}s"
        return out

    async def _spend(self, who: str, budget: str, item: limits.RateLimitItem, cost: int) -> None:
        try:
            # a fixed window counts refused hits too: test first, so a refused reservation costs nothing
            fits = self.sliding or await self.strategy.test(item, "miniml", budget, who, cost=cost)
            if fits and await self.strategy.hit(item, "miniml", budget, who, cost=cost):
                return
            wait = await self.seconds_until_admitted(item, budget, who, cost)
        except Exception as err:  # storage down: let the request through, say so
            self._warning.warn(err)
            return
        raise RateLimited(who, budget, item, max(1, math.ceil(wait)))

    async def seconds_until_admitted(
        self, item: limits.RateLimitItem, budget: str, who: str, cost: int
    ) -> float:
        """How long until ``cost`` fits the budget again if nothing else is spent (Retry-After).

        The sliding window counter admits a hit while ``floor(previous * weight + current) + cost <= limit``,
        the previous window's weight falling linearly to 0 over the current window; ``limits``' own
        ``reset_time`` is only when the next *one* previous hit decays, which a client obeying it found
        too short twelve times in a row. Other strategies' ``reset_time`` is exact for them.
        """
        if cost > item.amount:  # can never fit: one window is the honest answer
            return float(item.get_expiry())
        if isinstance(self.strategy, strategies.SlidingWindowCounterRateLimiter):
            window = await self.storage.get_sliding_window(  # type: ignore[attr-defined]
                item.key_for("miniml", budget, who), item.get_expiry()
            )
            return sliding_window_wait(*window, expiry=item.get_expiry(), limit=item.amount, cost=cost)
        stats = await self.strategy.get_window_stats(item, "miniml", budget, who)
        return stats.reset_time - time.time()

    async def close(self) -> None:
        """Release the storage's connections and timers (``limits`` has no public close)."""
        client = getattr(getattr(self.storage, "bridge", None), "storage", None)
        if client is not None:
            await client.aclose()
        timer = getattr(self.storage, "timer", None)
        if timer is not None and not timer.done():
            timer.cancel()
