from __future__ import annotations

from miniml.monitor.canary import Agreement, CanaryRouter, unit_hash


def test_share_converges_and_routing_is_sticky() -> None:
    router = CanaryRouter(0.1)
    roles = [router.role(f"req-{i}", None) for i in range(20_000)]
    share = roles.count("challenger") / len(roles)
    assert abs(share - 0.1) < 0.01
    assert router.role("req-7", None) == roles[7]  # same request id, same version


def test_sticky_by_key_keeps_a_client_on_one_version() -> None:
    router = CanaryRouter(0.5, sticky="key")
    assert len({router.role(f"req-{i}", "alice") for i in range(200)}) == 1
    assert router.role("x", None) in ("champion", "challenger")  # no key: by request id


def test_zero_share_is_all_champion_and_hash_is_uniform_range() -> None:
    assert {CanaryRouter(0.0).role(str(i), None) for i in range(100)} == {"champion"}
    assert all(0 <= unit_hash(str(i)) < 1 for i in range(100))


def test_agreement_counts_equal_answers() -> None:
    agreement = Agreement()
    assert agreement.rate is None
    agreement.add(["da", "sv", "nn"], ["da", "nb", "nn"])
    assert (agreement.compared, agreement.agreed) == (3, 2)
