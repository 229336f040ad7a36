"""Redis's settings as a node reads them: what is wrong, and what to set."""

from __future__ import annotations

import pytest

from signaling.cluster.redis_config import (
    RECOMMENDED_PUBSUB,
    REDIS_DEFAULT_PUBSUB,
    OutputLimit,
    RedisConfig,
    config_value,
    parse_output_limits,
)

MiB = 1024 * 1024
DEFAULT = "normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60"


def test_the_pubsub_limits_are_read_from_config_get_in_bytes_or_units() -> None:
    assert parse_output_limits(DEFAULT) == REDIS_DEFAULT_PUBSUB == OutputLimit(32 * MiB, 8 * MiB, 60)
    assert parse_output_limits("pubsub 256mb 64MB 60") == RECOMMENDED_PUBSUB
    assert parse_output_limits("pubsub 1gb 1k 0") == OutputLimit(1024 * MiB, 1000, 0)
    assert parse_output_limits("normal 0 0 0") is None  # no pubsub entry
    assert parse_output_limits("pubsub lots 0 0") is None


def test_the_recommendation_is_written_as_redis_takes_it() -> None:
    assert RECOMMENDED_PUBSUB.config_value() == "pubsub 256mb 64mb 60"
    assert parse_output_limits(RECOMMENDED_PUBSUB.config_value()) == RECOMMENDED_PUBSUB


@pytest.mark.parametrize("policy", ["allkeys-lru", "volatile-ttl", "allkeys-random", "volatile-lfu"])
def test_an_evicting_policy_is_an_error(policy: str) -> None:
    config = RedisConfig(policy, RECOMMENDED_PUBSUB)
    [problem] = config.problems
    assert (problem.setting, problem.found, problem.want, problem.severity) == (
        "maxmemory-policy",
        policy,
        "noeviction",
        "error",
    )


def test_a_hard_limit_below_the_recommendation_is_a_warning_and_none_is_fine() -> None:
    [problem] = RedisConfig("noeviction", REDIS_DEFAULT_PUBSUB).problems
    assert (problem.setting, problem.found, problem.want, problem.severity) == (
        "client-output-buffer-limit",
        "pubsub 32mb 8mb 60",
        "pubsub 256mb 64mb 60",
        "warning",
    )
    assert RedisConfig("noeviction", OutputLimit(0, 0, 0)).problems == []  # unlimited: never cut
    assert RedisConfig("noeviction", OutputLimit(1024 * MiB, 8 * MiB, 60)).problems == []


def test_what_could_not_be_read_is_neither_checked_nor_wrong() -> None:
    assert RedisConfig(None, None).checked == [] and RedisConfig(None, None).problems == []
    assert RedisConfig("noeviction", None).checked == ["maxmemory-policy"]


def test_config_get_replies_are_read_in_resp3_and_resp2() -> None:
    assert config_value({"maxmemory-policy": "noeviction"}, "maxmemory-policy") == "noeviction"
    assert config_value(["maxmemory-policy", "noeviction"], "maxmemory-policy") == "noeviction"
    assert config_value({}, "maxmemory-policy") is None and config_value([], "maxmemory-policy") is None
