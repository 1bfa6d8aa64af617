"""The worker's startup checks of its Redis server (``conveyor.broker.checks``)."""

from __future__ import annotations

import pytest
import redis

from conveyor.broker.checks import MIN_REDIS_MAJOR, _major, check_server
from conveyor.errors import ConfigurationError


@pytest.mark.parametrize(("version", "major"), [("7.0.15", 7), (b"6.2.14", 6), ("255.255.255", 255),
                                                ("", None), ("unstable", None), (None, None)])
def test_major_version_parsing(version: object, major: int | None) -> None:
    assert _major(version) == major


def test_the_test_server_passes_and_reports_a_supported_version(redis_sync: redis.Redis) -> None:
    redis_sync.config_set("maxmemory-policy", "noeviction")
    assert isinstance(check_server(redis_sync), list)
    assert (_major(redis_sync.info("server")["redis_version"]) or 0) >= MIN_REDIS_MAJOR


def test_an_evicting_policy_is_refused_naming_the_setting(redis_sync: redis.Redis) -> None:
    redis_sync.config_set("maxmemory-policy", "allkeys-lru")
    try:
        with pytest.raises(ConfigurationError, match="maxmemory-policy is 'allkeys-lru'"):
            check_server(redis_sync)
        assert any("allkeys-lru" in w for w in check_server(redis_sync, allow_eviction=True))
    finally:
        redis_sync.config_set("maxmemory-policy", "noeviction")
