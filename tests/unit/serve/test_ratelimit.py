"""Per-key budgets for requests, input characters and tokens, with Retry-After; memory and Redis storage."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from miniml.serve.ratelimit import RateLimited, RateLimiter
from miniml.serve.settings import ApiKeyRecord, RateLimitSettings
from serve_support import redis_server

pytestmark = pytest.mark.anyio
SHA = "0" * 64


async def test_request_budget_refuses_with_retry_after() -> None:
    limiter = RateLimiter(RateLimitSettings(requests="3/minute"))
    for _ in range(3):
        await limiter.spend_request("alice")
    with pytest.raises(RateLimited) as err:
        await limiter.spend_request("alice")
    assert err.value.status == 429 and err.value.budget == "requests"
    assert 1 <= int(err.value.headers["Retry-After"]) <= 60
    await limiter.spend_request("bob")  # budgets are per key
    await limiter.close()


async def test_char_budget_counts_characters_not_requests() -> None:
    limiter = RateLimiter(RateLimitSettings(chars="100/minute"))
    await limiter.spend_chars("alice", 60)
    await limiter.spend_chars("alice", 40)
    with pytest.raises(RateLimited) as err:
        await limiter.spend_chars("alice", 1)
    assert err.value.budget == "chars"
    with pytest.raises(RateLimited) as too_big:  # larger than the whole window: Retry-After is the window
        await limiter.spend_chars("carol", 500)
    assert too_big.value.headers["Retry-After"] == "60"
    await limiter.close()


async def test_per_key_budgets_override_defaults() -> None:
    limiter = RateLimiter(RateLimitSettings(requests="1/minute"))
    limiter.register([ApiKeyRecord(name="vip", sha256=SHA, requests="5/minute")])
    for _ in range(5):
        await limiter.spend_request("vip")
    await limiter.spend_request("other")
    with pytest.raises(RateLimited):
        await limiter.spend_request("other")
    assert limiter.active
    assert not RateLimiter(RateLimitSettings()).active
    await limiter.close()


@pytest.mark.parametrize("strategy", ["fixed-window", "moving-window"])
async def test_other_strategies(strategy: str) -> None:
    limiter = RateLimiter(RateLimitSettings(requests="2/minute", strategy=strategy))  # type: ignore[arg-type]
    await limiter.spend_request("k")
    await limiter.spend_request("k")
    with pytest.raises(RateLimited):
        await limiter.spend_request("k")
    await limiter.close()


@pytest.mark.parametrize("strategy", ["sliding-window-counter", "fixed-window"])
async def test_token_budget_reserves_then_refunds_the_unused_part(strategy: str) -> None:
    limiter = RateLimiter(RateLimitSettings(tokens="100/minute", strategy=strategy))  # type: ignore[arg-type]
    assert await limiter.spend_tokens("k", 70) == 70  # prompt + max_new_tokens
    assert (await limiter.headers("k"))["x-ratelimit-remaining-tokens"] == "30"
    with pytest.raises(RateLimited) as err:
        await limiter.spend_tokens("k", 40)
    assert err.value.budget == "tokens" and int(err.value.headers["Retry-After"]) >= 1
    await limiter.refund_tokens("k", 50)  # the answer used 20 of the 70
    headers = await limiter.headers("k")
    assert headers["x-ratelimit-remaining-tokens"] == "80" and headers["x-ratelimit-limit-tokens"] == "100"
    await limiter.refund_tokens("k", 500)  # never more than was spent
    assert (await limiter.headers("k"))["x-ratelimit-remaining-tokens"] == "100"
    assert await limiter.spend_tokens("nobudget-free", 10) == 10  # the default applies to every key
    assert await RateLimiter(RateLimitSettings()).spend_tokens("k", 10) == 0  # no budget: nothing reserved
    await limiter.close()


def test_token_budgets_need_a_strategy_that_can_refund() -> None:
    with pytest.raises(ValueError, match="moving window"):
        RateLimitSettings(tokens="100/minute", strategy="moving-window")


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


async def test_redis_storage_is_shared_between_limiters(redis_url: str) -> None:
    settings = RateLimitSettings(storage=redis_url, requests="3/minute")
    one, two = RateLimiter(settings), RateLimiter(settings)  # two replicas, one budget
    await one.spend_request("shared")
    await two.spend_request("shared")
    await one.spend_request("shared")
    with pytest.raises(RateLimited):
        await two.spend_request("shared")
    await one.close()
    await two.close()


async def test_token_budgets_and_refunds_are_shared_through_redis(redis_url: str) -> None:
    settings = RateLimitSettings(storage=redis_url, tokens="100/minute")
    one, two = RateLimiter(settings), RateLimiter(settings)
    await one.spend_tokens("tok", 60)
    with pytest.raises(RateLimited):
        await two.spend_tokens("tok", 60)
    await one.refund_tokens("tok", 30)
    assert await two.spend_tokens("tok", 60) == 60
    assert (await one.headers("tok"))["x-ratelimit-remaining-tokens"] == "10"
    await one.close()
    await two.close()


async def test_unreachable_storage_lets_requests_through() -> None:
    from serve_support import free_port

    limiter = RateLimiter(RateLimitSettings(storage=f"redis://127.0.0.1:{free_port()}", requests="1/minute"))
    await limiter.spend_request("k")
    await limiter.spend_request("k")  # not limited: the storage is down, the API stays up
    await limiter.close()


class Clock:
    """A settable clock for the memory storage of ``limits`` (its windows follow ``time.time()``)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now


@pytest.mark.parametrize(("rate", "cost"), [("10/minute", 1), ("1000/minute", 90)])
async def test_a_client_obeying_retry_after_is_admitted_at_once(
    monkeypatch: pytest.MonkeyPatch, rate: str, cost: int
) -> None:
    import limits.aio.storage.memory as memory

    import miniml.serve.ratelimit as ratelimit

    clock = Clock(1_000_000.0 + 17.3)  # not at a window boundary
    monkeypatch.setattr(memory, "time", clock)
    monkeypatch.setattr(ratelimit, "time", clock)
    limiter = RateLimiter(RateLimitSettings(requests=rate, chars=rate))
    refusals_in_a_row = 0
    for _ in range(200):  # a steady client: spend until refused, wait Retry-After, try again
        try:
            await limiter.spend_chars("alice", cost)
            refusals_in_a_row = 0
            clock.now += 0.5
        except RateLimited as err:
            refusals_in_a_row += 1
            assert refusals_in_a_row == 1, "Retry-After was too short: refused again after obeying it"
            clock.now += int(err.headers["Retry-After"])
    await limiter.close()


def test_sliding_window_wait() -> None:
    from miniml.serve.ratelimit import sliding_window_wait

    # 10/min, 10 hits in the previous window, 0 now, 30 s left in this window: the previous count weighs
    # 10 * 30/60 = 5 now; a hit fits once the weight is below 10 (now), i.e. at once
    assert sliding_window_wait(10, 30, 0, 90, expiry=60, limit=10, cost=1) == 0
    # 10 previous, 6 current, 30 s left: weight 5 + 6 = 11 >= 10; fits when 10 * t/60 + 6 < 10 → t < 24 s
    assert sliding_window_wait(10, 30, 6, 90, expiry=60, limit=10, cost=1) == pytest.approx(6)
    # 10 current (full): wait for the window to end (30 s), then for it to weigh < 10: 60 * (1 - 10/10) = 0
    assert sliding_window_wait(0, 0, 10, 90, expiry=60, limit=10, cost=1) == pytest.approx(30)
    # cost 5 of 10 with 10 current: after the window ends, 10 * (1 - s/60) < 6 → s > 24 s
    assert sliding_window_wait(0, 0, 10, 90, expiry=60, limit=10, cost=5) == pytest.approx(54)
