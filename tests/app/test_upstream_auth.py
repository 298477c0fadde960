"""Upstream credentials in auth.json form: parsed per kind, sent only to their hosts (GitHub's
API and download hosts for github-oauth), never after a redirect to another host, never in
a log, an error body or `satchel env` / `satchel doctor`; credentials in upstream URLs are
refused at start."""

# ruff: noqa: F811  (the fixtures imported from test_refusals are parameters here)
from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from runtime.app.config import load_serve_config
from runtime.app.logs import logging_config
from runtime.app.upstream_auth import UpstreamAuth, load_upstream_auth, parse_auth_json
from runtime.errors import ConfigError
from tests.app.test_refusals import (  # noqa: F401  (fixtures)
    App,
    CountingServer,
    Upstream,
    make_app,
    other,
    redirect,
    send,
    upstream,
)
from tests.cli_helpers import satchel

SECRET = "ghp_n3verLoggedT0ken"


def auth(document: object) -> UpstreamAuth:
    return UpstreamAuth(parse_auth_json(json.dumps(document), "test"))


def header(found: UpstreamAuth, host: str, port: int | None = None) -> dict[str, str] | None:
    credential = found.for_host(host, port)
    return dict(credential.headers) if credential else None


def test_each_kind_becomes_the_header_composer_sends() -> None:
    found = auth(
        {
            "http-basic": {"repo.example.com": {"username": "bob", "password": SECRET}},
            "bearer": {"api.example.com": SECRET},
            "github-oauth": {"github.com": SECRET},
            "gitlab-token": {
                "gitlab.com": SECRET,
                "git.corp.example": {"username": "u", "token": SECRET},
            },
        }
    )
    basic = base64.b64encode(f"bob:{SECRET}".encode()).decode()
    assert header(found, "repo.example.com") == {"Authorization": f"Basic {basic}"}
    assert header(found, "api.example.com") == {"Authorization": f"Bearer {SECRET}"}
    for host in ("github.com", "api.github.com", "codeload.github.com"):
        assert header(found, host) == {"Authorization": f"token {SECRET}"}
    assert header(found, "objects.githubusercontent.com") is None  # signed URLs, no token
    assert header(found, "gitlab.com") == {"PRIVATE-TOKEN": SECRET}
    pair = base64.b64encode(f"u:{SECRET}".encode()).decode()
    assert header(found, "git.corp.example") == {"Authorization": f"Basic {pair}"}
    assert header(found, "example.com") is None and header(found, "evil.repo.example.com") is None
    assert found.hosts()["api.github.com"] == "github-oauth"
    assert SECRET not in repr(found) and SECRET not in repr(found.for_host("github.com"))


def test_a_github_enterprise_token_goes_to_its_own_host_only_and_a_port_narrows_a_key() -> None:
    found = auth(
        {"github-oauth": {"github.corp.example": SECRET}, "bearer": {"h.example:8443": "x"}}
    )
    assert header(found, "github.corp.example") is not None
    assert header(found, "api.github.com") is None
    assert header(found, "h.example", 8443) == {"Authorization": "Bearer x"}
    assert header(found, "h.example", 443) is None and header(found, "h.example") is None


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ('{"github-oauth": {"github.com": "' + SECRET + '"', "not valid JSON"),
        (json.dumps([SECRET]), "a JSON object"),
        (json.dumps({"bitbucket-oauth": {"bitbucket.org": SECRET}}), "unsupported section"),
        (json.dumps({"bearer": {"https://repo.example": SECRET}}), "is not a host name"),
        (json.dumps({"bearer": {"repo.example": ""}}), "non-empty string"),
        (json.dumps({"bearer": {"repo.example": SECRET + "\r\nX: y"}}), "line break"),
        (json.dumps({"http-basic": {"repo.example": {"username": "bob"}}}), "password"),
        (
            json.dumps({"bearer": {"github.com": SECRET}, "github-oauth": {"github.com": SECRET}}),
            "both bearer and github-oauth",
        ),
    ],
)
def test_invalid_auth_json_is_refused_naming_the_variable_never_the_value(
    document: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as refused:
        load_upstream_auth({"COMPOSER_AUTH": document})
    assert str(refused.value).startswith("COMPOSER_AUTH")
    assert SECRET not in str(refused.value)


def test_the_file_and_composer_auth_merge_with_composer_auth_winning(tmp_path: Path) -> None:
    file = tmp_path / "auth.json"
    file.write_text(json.dumps({"bearer": {"a.example": "from-file", "b.example": "file"}}))
    found = load_upstream_auth(
        {
            "SATCHEL_UPSTREAM_AUTH_FILE": str(file),
            "COMPOSER_AUTH": json.dumps({"bearer": {"b.example": "from-env"}}),
        }
    )
    assert header(found, "a.example") == {"Authorization": "Bearer from-file"}
    assert header(found, "b.example") == {"Authorization": "Bearer from-env"}
    assert found.sources == ("SATCHEL_UPSTREAM_AUTH_FILE", "COMPOSER_AUTH")
    with pytest.raises(ConfigError, match=r"SATCHEL_UPSTREAM_AUTH_FILE: cannot read .*missing"):
        load_upstream_auth({"SATCHEL_UPSTREAM_AUTH_FILE": str(tmp_path / "missing")})


def test_credentials_inside_an_upstream_url_are_refused_at_start(
    local_env: dict[str, str],
) -> None:
    env = {**local_env, "SATCHEL_UPSTREAMS": f"up=http://bob:{SECRET}@127.0.0.1:9"}
    with pytest.raises(ConfigError, match="COMPOSER_AUTH") as refused:
        load_serve_config(env)
    assert SECRET not in str(refused.value) and "bob" not in str(refused.value)
    result = satchel(env, "serve", "--port", "0")
    assert result.exit_code == 2
    assert "credentials inside the URL are refused" in result.stderr
    assert "COMPOSER_AUTH" in result.stderr and SECRET not in result.stderr + result.stdout


def test_satchel_env_and_doctor_list_hosts_never_values(local_env: dict[str, str]) -> None:
    env = {**local_env, "COMPOSER_AUTH": json.dumps({"github-oauth": {"github.com": SECRET}})}
    shown = satchel(env, "env", "--json")
    assert shown.exit_code == 0 and SECRET not in shown.stdout
    document = json.loads(shown.stdout)
    assert document["env"]["COMPOSER_AUTH"] == "**********"
    assert document["upstream_credentials"]["codeload.github.com"] == "github-oauth"
    plain = satchel(env, "env")
    assert plain.exit_code == 0 and SECRET not in plain.stdout
    assert "github.com (github-oauth)" in plain.stdout
    doctor = satchel(env, "doctor", "--json")
    assert SECRET not in doctor.stdout
    assert json.loads(doctor.stdout)["upstream_credentials"]["api.github.com"] == "github-oauth"
    text = satchel(env, "doctor")
    assert "upstream credentials: api.github.com (github-oauth)" in text.stdout
    assert SECRET not in text.stdout
    bad = satchel({**local_env, "COMPOSER_AUTH": "{" + SECRET}, "doctor")
    assert bad.exit_code == 2 and SECRET not in bad.stderr


def test_a_github_token_never_goes_to_a_plain_http_download_host(
    make_app: Callable[..., App],
    upstream: Upstream,
    other: CountingServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Like packagist's dists: codeload.github.com needs the token (401 without). Over
    plain http (not an upstream the operator configured) the token is never sent, even
    with a credential for the host: the dist fails (502) instead. (That https hops keep it
    on their host only, never after a redirect elsewhere: test_outbound.) The name
    resolves, through the injected resolver, to a server on 127.0.0.2 (SATCHEL_DIST_HOSTS)."""
    port = other.server_address[1]

    def codeload(handler: BaseHTTPRequestHandler) -> None:
        if handler.headers.get("Authorization") != f"token {SECRET}":
            return send(handler, 401, b'{"message": "Bad credentials"}')
        return send(handler, 200, b"PK\x05\x06" + b"\0" * 18)

    other.routes["/acme/x/zip/abc"] = codeload
    upstream.point("acme/x", f"http://codeload.github.com:{port}/acme/x/zip/abc")

    async def to_other(host: str, port: int) -> list[str]:
        return ["127.0.0.2"]

    with caplog.at_level(logging.DEBUG):
        app = make_app(
            to_other,
            SATCHEL_DIST_HOSTS="codeload.github.com",
            COMPOSER_AUTH=json.dumps({"github-oauth": {"github.com": SECRET}}),
        )
        response = app.get(app.dist_path("acme/x"))
    assert response.status_code == 502 and SECRET not in response.text
    assert other.authorizations == [None]
    assert set(upstream.server.authorizations) == {None}  # the upstream is not github.com
    assert SECRET not in caplog.text
    assert SECRET not in app.log_file.read_text()


def test_httpx_never_logs_request_urls() -> None:
    """httpx logs each request's URL at INFO (a signed redirect carries a token in its
    query): its loggers are held at WARNING, whatever the app's level."""
    loggers = logging_config("debug")["loggers"]
    for name in ("httpx", "httpcore"):
        assert loggers[name] == {"handlers": [], "level": "WARNING", "propagate": False}
