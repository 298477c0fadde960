"""`satchel serve`'s variables and flags: validated up front, one error line, exit 2."""

from __future__ import annotations

import pytest

from runtime.app.config import load_serve_config
from runtime.errors import ConfigError
from tests.cli_helpers import is_one_error_line, satchel


def test_the_defaults_mirror_packagist_on_localhost_8080() -> None:
    config = load_serve_config({})
    assert [(u.alias, u.url) for u in config.upstreams] == [
        ("packagist", "https://repo.packagist.org")
    ]
    assert (config.host, config.port, config.workers) == ("127.0.0.1", 8080, 1)
    assert (config.upstream_ttl, config.negative_ttl, config.public_url) == (300, 60, None)


def test_several_upstreams_keep_their_order_and_lose_trailing_slashes() -> None:
    config = load_serve_config(
        {"SATCHEL_UPSTREAMS": "main=https://repo.example.com/composer/, extra=http://10.0.0.1:81"}
    )
    assert [(u.alias, u.url) for u in config.upstreams] == [
        ("main", "https://repo.example.com/composer"),
        ("extra", "http://10.0.0.1:81"),
    ]
    assert config.upstream("extra") is not None and config.upstream("nope") is None


def test_flags_win_over_the_environment() -> None:
    env = {"SATCHEL_HOST": "0.0.0.0", "SATCHEL_PORT": "9000", "SATCHEL_WORKERS": "4"}
    config = load_serve_config(env, port=9100, workers=2)
    assert (config.host, config.port, config.workers) == ("0.0.0.0", 9100, 2)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"SATCHEL_UPSTREAMS": "packagist=ftp://repo.packagist.org"}, "SATCHEL_UPSTREAMS"),
        ({"SATCHEL_UPSTREAMS": "https://repo.packagist.org"}, "is not alias=url"),
        ({"SATCHEL_UPSTREAMS": "p2=https://a.example"}, "alias 'p2'"),
        ({"SATCHEL_UPSTREAMS": "a=https://a.example,a=https://b.example"}, "given twice"),
        ({"SATCHEL_UPSTREAMS": "a=https://a.example?x=1"}, "query"),
        ({"SATCHEL_UPSTREAMS": " , "}, "no upstream"),
        ({"SATCHEL_PORT": "http"}, "SATCHEL_PORT"),
        ({"SATCHEL_WORKERS": "0"}, "SATCHEL_WORKERS"),
        ({"SATCHEL_PUBLIC_URL": "mirror.example.com"}, "SATCHEL_PUBLIC_URL"),
        ({"SATCHEL_UPSTREAM_TTL": "-1"}, "SATCHEL_UPSTREAM_TTL"),
        ({"SATCHEL_HOT_CACHE_SIZE": "lots"}, "SATCHEL_HOT_CACHE_SIZE"),
    ],
)
def test_a_bad_variable_is_a_config_error_naming_it(env: dict[str, str], expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        load_serve_config(env)


def test_a_bad_flag_is_named_as_the_flag() -> None:
    with pytest.raises(ConfigError, match="--port"):
        load_serve_config({}, port=70000)


@pytest.mark.parametrize(
    ("env", "args", "expected"),
    [
        ({"SATCHEL_UPSTREAMS": "x=not-a-url"}, [], "SATCHEL_UPSTREAMS"),
        ({}, ["--workers", "0"], "--workers"),
        ({"SATCHEL_PORT": "eighty"}, [], "SATCHEL_PORT"),
        ({"STORAGE_SOURCE": "s3", "STORAGE_AWS_ARGS": '{"nope": 1}'}, [], "STORAGE_AWS_ARGS"),
    ],
)
def test_serve_with_bad_config_prints_one_line_and_exits_2(
    env: dict[str, str], args: list[str], expected: str
) -> None:
    result = satchel(env, "serve", *args)
    assert result.exit_code == 2
    assert is_one_error_line(result.stderr) and expected in result.stderr
