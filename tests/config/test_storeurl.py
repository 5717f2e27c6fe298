"""superd.config.storeurl: the --ban-store URL."""

from __future__ import annotations

import pytest

from superd.config.storeurl import RedisTarget, parse_redis_url, url_has_password


@pytest.mark.parametrize("url,target", [
    ("redis://127.0.0.1", RedisTarget("127.0.0.1", 6379, 0)),
    ("redis://10.0.0.5:7000/3", RedisTarget("10.0.0.5", 7000, 3)),
    ("redis://[::1]:6380/", RedisTarget("::1", 6380, 0)),
    ("redis://:s%40cret@cache.example:6379/1", RedisTarget("cache.example", 6379, 1, "s@cret")),
    ("redis://superd:pw@cache.example/2",
     RedisTarget("cache.example", 6379, 2, "pw", username="superd")),
    ("redis://superd@cache.example", RedisTarget("cache.example", username="superd")),
    ("rediss://cache.example:6380/0", RedisTarget("cache.example", 6380, tls=True)),
    ("rediss://127.0.0.1/0?ca=/etc/superd/redis-ca.pem",
     RedisTarget("127.0.0.1", tls=True, ca_path="/etc/superd/redis-ca.pem")),
])
def test_valid_urls(url: str, target: RedisTarget) -> None:
    """Host, port, database and password are read; defaults 6379 and 0."""
    assert parse_redis_url(url) == target


@pytest.mark.parametrize("url", ["http://x", "redis://", "redis://h:99999",
                                 "redis://h/x", "redis://h/1?ssl=1",
                                 "redis://h/1?ca=/etc/ca.pem", "rediss://h/1?ca=ca.pem",
                                 "rediss://h/1?ca=/a&ca=/b", "rediss://h/1#x",
                                 "redis://bad%20user@h/1"])
def test_invalid_urls(url: str) -> None:
    """Wrong scheme, no host, bad port, bad db, unknown options, a CA
    without TLS or not absolute: ValueError."""
    with pytest.raises(ValueError):
        parse_redis_url(url)


def test_names_and_description_hide_the_password() -> None:
    """Logs show the server and database, never the password; the channel has the db."""
    target = parse_redis_url("redis://:pw@[::1]:7/2")
    assert target.describe() == "redis://[::1]:7/2"
    assert "pw" not in repr(target)
    assert target.channel == "superd:bans:2"
    assert parse_redis_url("rediss://u:pw@h/0").describe() == "rediss://u@h:6379/0"


@pytest.mark.parametrize("url,has", [
    ("redis://:pw@h/0", True), ("redis://user:pw@h/0", True), ("redis://user@h/0", False),
    ("redis://h/0", False), ("rediss://:@h/0", True)])
def test_url_has_password(url: str, has: bool) -> None:
    """Whether a URL carries a password (the command line refuses one)."""
    assert url_has_password(url) is has


@pytest.mark.parametrize("url", [
    "redis://:s3cret@127.0.0.1:notaport/0",
    "rediss://:s3cret@/0",
    "redis://user:s3cret@/0",
])
def test_errors_never_repeat_the_password(url: str) -> None:
    """A bad URL's error (which reaches config errors and logs) hides the password."""
    with pytest.raises(ValueError) as caught:
        parse_redis_url(url)
    assert "s3cret" not in str(caught.value)
    assert "***@" in str(caught.value)
