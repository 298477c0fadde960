"""satchel:upstreamAuth: a Pulumi secret, mounted from a Kubernetes Secret into the app's
pods as SATCHEL_UPSTREAM_AUTH_FILE; never in the outputs, the ConfigMap or the Deployment."""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra.components.app import UPSTREAM_AUTH_FILE
from runtime.app.upstream_auth import parse_auth_json
from tests.infra.harness import ProgramRun, run_program, stack_config_with

TOKEN = "ghp_infraT0kenNeverShown"
AUTH = json.dumps({"github-oauth": {"github.com": TOKEN}})
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
SECRET = "kubernetes:core/v1:Secret"
KEY = "satchel:upstreamAuth"


def _config(**changes: Any) -> dict[str, Any]:
    return stack_config_with(
        "dev", deployApp=True, appImage="registry.example/satchel:1.0", **changes
    )


@pytest.fixture(scope="module")
def run() -> ProgramRun:
    return run_program(_config(upstreamAuth=AUTH), secret_keys=(KEY,))


def test_the_auth_json_is_a_secret_mounted_read_only_where_the_app_reads_it(
    run: ProgramRun,
) -> None:
    secret = run.one(SECRET)
    assert secret.inputs["stringData"] == {"auth.json": AUTH}
    assert "stringData" in secret.options.secret_inputs
    assert parse_auth_json(secret.inputs["stringData"]["auth.json"], "test")
    pod = run.one(DEPLOYMENT).inputs["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert {"name": "SATCHEL_UPSTREAM_AUTH_FILE", "value": UPSTREAM_AUTH_FILE} in container["env"]
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "upstream-auth"]
    assert mount["readOnly"] is True and UPSTREAM_AUTH_FILE.startswith(mount["mountPath"] + "/")
    (volume,) = [v for v in pod["volumes"] if v["name"] == "upstream-auth"]
    assert volume["secret"]["secretName"] == f"{secret.name}-1a2b3c4d"
    assert volume["secret"]["items"] == [{"key": "auth.json", "path": "auth.json"}]


def test_the_credentials_appear_nowhere_but_in_the_secret(run: ProgramRun) -> None:
    assert TOKEN not in json.dumps(run.outputs)
    for resource in run.mocks.resources:
        if resource.type != SECRET:
            assert TOKEN not in json.dumps(resource.inputs, default=str), resource.name
    config_map = run.one("kubernetes:core/v1:ConfigMap")
    assert "SATCHEL_UPSTREAM_AUTH_FILE" not in json.dumps(config_map.inputs)
    assert "COMPOSER_AUTH" not in json.dumps(run.outputs)


def test_without_upstream_auth_there_is_no_secret_and_no_mount() -> None:
    run = run_program(_config())
    assert run.of_type(SECRET) == []
    (container,) = run.one(DEPLOYMENT).inputs["spec"]["template"]["spec"]["containers"]
    assert "env" not in container


def test_upstream_auth_in_plain_text_is_refused() -> None:
    with pytest.raises(Exception, match=r"satchel:upstreamAuth: holds credentials.*--secret") as e:
        run_program(_config(upstreamAuth=AUTH))
    assert TOKEN not in str(e.value)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('{"github-oauth": {"github.com": "' + TOKEN + '"', "not valid JSON"),
        (json.dumps({"bitbucket-oauth": {"bitbucket.org": TOKEN}}), "unsupported section"),
        (json.dumps({"bearer": {"https://x": TOKEN}}), "is not a host name"),
    ],
)
def test_an_invalid_auth_json_is_refused_without_quoting_it(value: str, message: str) -> None:
    with pytest.raises(Exception, match=message) as e:
        run_program(_config(upstreamAuth=value), secret_keys=(KEY,))
    assert TOKEN not in str(e.value) and "satchel:upstreamAuth" in str(e.value)


def test_upstream_auth_needs_the_app_deployed() -> None:
    config = stack_config_with("dev", upstreamAuth=AUTH)
    with pytest.raises(Exception, match="upstreamAuth: is mounted into the app's pods"):
        run_program(config, secret_keys=(KEY,))
