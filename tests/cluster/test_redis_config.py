"""Redis's settings as a node reads them: what is wrong, what to set, and when its backlog counts as lagging."""

from __future__ import annotations

import pytest

from signaling.cluster.redis_config import (
    RECOMMENDED_PUBSUB,
    REDIS_DEFAULT_PUBSUB,
    OutputLimit,
    RedisConfig,
    config_value,
    parse_omem,
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


def test_lagging_starts_at_half_the_soft_limit_or_of_the_hard_one() -> None:
    assert RedisConfig("noeviction", OutputLimit(256 * MiB, 64 * MiB, 60)).lag_threshold == 32 * MiB
    assert RedisConfig("noeviction", OutputLimit(256 * MiB, 0, 0)).lag_threshold == 128 * MiB
    # No limit at all: judged against the recommendation; unknown: against Redis's default.
    assert RedisConfig("noeviction", OutputLimit(0, 0, 0)).lag_threshold == RECOMMENDED_PUBSUB.soft // 2
    assert RedisConfig(None, None).lag_threshold == REDIS_DEFAULT_PUBSUB.soft // 2


def test_the_backlog_is_a_clients_omem() -> None:
    line = "id=7 addr=127.0.0.1:5 laddr=127.0.0.1:6 fd=9 name= age=3 idle=0 flags=P db=0 sub=2 psub=0 "
    line += "ssub=0 multi=-1 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=1024 rbp=0 obl=0 oll=3 omem=61440 "
    line += "tot-mem=64000 events=rw cmd=subscribe user=default redir=-1 resp=2\n"
    assert parse_omem(line) == 61440
    assert parse_omem("") is None  # no such client


def test_config_get_replies_are_read_in_resp3_and_resp2() -> None:
    assert config_value({"maxmemory-policy": "noeviction"}, "maxmemory-policy") == "noeviction"
    assert config_value(["maxmemory-policy", "noeviction"], "maxmemory-policy") == "noeviction"
    assert config_value({}, "maxmemory-policy") is None and config_value([], "maxmemory-policy") is None
