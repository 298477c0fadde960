"""IRSA end to end on the local target: real tokens, real STS, real policy enforcement."""

from __future__ import annotations

import contextlib
import json
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import botocore.session
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ReadTimeoutError

import runtime
from infra.local.oidc import SigningKey
from infra.local.pod_identity import PodIdentityAgent
from infra.local.target import LocalTarget
from runtime import ConfigError, PermissionDenied, Storages, credentials
from runtime.credentials import StsRefused, TokenFileError, resolve_credentials

WEB_IDENTITY_VARS = ("AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE")


def _open(env: dict[str, str]) -> Storages:
    return runtime.open_storages(runtime.load_settings(env))


def _source(env: dict[str, str]) -> dict[str, object]:
    settings = runtime.load_settings(env)
    return resolve_credentials(settings.aws_args, settings.environ).info.as_dict()


def _with_args(env: dict[str, str], **changes: object) -> dict[str, str]:
    args = {**json.loads(env["STORAGE_AWS_ARGS"]), **changes}
    return {**env, "STORAGE_AWS_ARGS": json.dumps(args)}


def _stored(target: LocalTarget, key: str) -> bool:
    listing = target.admin_client().list_objects_v2(Bucket=target.bucket, Prefix=key)
    return bool(listing.get("Contents"))


def _key() -> str:
    return f"irsa-{secrets.token_hex(4)}.txt"


def test_irsa_from_the_env_only_reaches_every_storage(
    target: LocalTarget, pod_env: dict[str, str]
) -> None:
    storages = _open(pod_env)
    key = _key()
    for _, storage in storages.items():
        storage.write(key, b"irsa")
        assert storage.read(key) == b"irsa"
        storage.delete(key)
    info = _source(pod_env)
    assert info["source"] == "web-identity"
    assert info["role_arn"] == target.role_arn
    assert info["token_file"] == str(target.token_file)
    assert str(info["detail"]).startswith("IRSA:")
    assert str(info["session_name"]).startswith("satchel-")


def test_explicit_args_only_reach_the_bucket(target: LocalTarget, pod_env: dict[str, str]) -> None:
    env = {k: v for k, v in pod_env.items() if k not in WEB_IDENTITY_VARS}
    env = _with_args(
        env,
        roleArn=target.role_arn,
        webIdentityTokenFile=str(target.token_file),
        roleSessionName="explicit-session",
    )
    key = _key()
    _open(env).packages.write(key, b"explicit")
    assert _stored(target, f"packeton/{key}")
    info = _source(env)
    assert info["session_name"] == "explicit-session"
    assert str(info["detail"]).startswith("explicit: roleArn from STORAGE_AWS_ARGS")


def test_mixed_args_name_the_role_and_the_env_gives_the_token_file(
    target: LocalTarget, pod_env: dict[str, str]
) -> None:
    env = {k: v for k, v in pod_env.items() if k != "AWS_ROLE_ARN"}
    env = _with_args(env, roleArn=target.role_arn)
    key = _key()
    _open(env).artifacts.write(key, b"mixed")
    assert _stored(target, f"artifact/{key}")
    detail = str(_source(env)["detail"])
    assert "roleArn from STORAGE_AWS_ARGS" in detail
    assert "webIdentityTokenFile from AWS_WEB_IDENTITY_TOKEN_FILE" in detail


def test_the_session_name_comes_from_aws_role_session_name(
    target: LocalTarget, pod_env: dict[str, str]
) -> None:
    env = {**pod_env, "AWS_ROLE_SESSION_NAME": "named-by-env"}
    storages = _open(env)
    storages.packages.exists("whatever")
    assert _source(env)["session_name"] == "named-by-env"


def test_static_keys_win_over_irsa(target: LocalTarget, pod_env: dict[str, str]) -> None:
    assert target.seaweed is not None
    env = _with_args(
        pod_env,
        accessKeyId=target.seaweed.admin.access_key,
        accessKeySecret=target.seaweed.admin.secret_key,
    )
    assert _source(env)["source"] == "static"
    key = _key()
    _open(env).packages.write(key, b"static")
    assert _stored(target, f"packeton/{key}")


def test_pod_identity_through_a_container_credentials_endpoint(
    target: LocalTarget, pod_env: dict[str, str], tmp_path: Path
) -> None:
    auth_token = secrets.token_urlsafe(24)
    token_file = tmp_path / "eks-pod-identity-token"
    token_file.write_text(auth_token)
    agent = PodIdentityAgent(
        sts_endpoint=target.endpoint,
        role_arn=target.role_arn,
        service_account_token=target.mint_token,
        authorization_token=auth_token,
    )
    agent.start()
    try:
        env = {k: v for k, v in pod_env.items() if k not in WEB_IDENTITY_VARS}
        env["AWS_CONTAINER_CREDENTIALS_FULL_URI"] = agent.url
        env["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"] = str(token_file)
        assert _source(env)["source"] == "container"
        assert agent.requests == 0  # resolution is deferred: no call before first use
        key = _key()
        storages = _open(env)
        storages.mirror_dist.write(key, b"pod identity")
        assert storages.mirror_dist.read(key) == b"pod identity"
        assert agent.requests == 1

        token_file.write_text("wrong-token")
        with pytest.raises(PermissionDenied):
            _open(env).mirror_dist.read(key)
    finally:
        agent.stop()


# -- refusals: each a clear error, nothing written ------------------------------------


@pytest.mark.parametrize(
    "token_kind",
    ["other-service-account", "other-namespace", "wrong-audience", "expired", "other-key"],
)
def test_sts_refuses_tokens_that_do_not_match_the_trust_policy(
    target: LocalTarget, pod_env: dict[str, str], token_kind: str
) -> None:
    token = {
        "other-service-account": lambda: target.mint_token(service_account="intruder"),
        "other-namespace": lambda: target.mint_token(namespace="default"),
        "wrong-audience": lambda: target.mint_token(audience="vault"),
        "expired": lambda: target.mint_token(expired=True),
        "other-key": lambda: target.mint_token(key=SigningKey.generate()),
    }[token_kind]()
    target.rotate_token(token)
    key = _key()
    with pytest.raises(PermissionDenied) as caught:
        _open(pod_env).packages.write(key, b"x")
    assert isinstance(caught.value.cause, StsRefused)
    assert "STS refused to let the token assume" in str(caught.value)
    assert target.role_arn in str(caught.value)
    assert not _stored(target, f"packeton/{key}")


def test_a_role_that_does_not_exist_is_refused(
    target: LocalTarget, pod_env: dict[str, str]
) -> None:
    env = {**pod_env, "AWS_ROLE_ARN": "arn:aws:iam::000000000000:role/no-such-role"}
    with pytest.raises(PermissionDenied) as caught:
        _open(env).packages.write(_key(), b"x")
    assert isinstance(caught.value.cause, StsRefused)


def test_a_write_outside_the_four_prefixes_is_denied(
    target: LocalTarget, pod_env: dict[str, str]
) -> None:
    env = {**pod_env, "STORAGE_AWS_PREFIX": "not-ours"}
    key = _key()
    with pytest.raises(PermissionDenied, match="access denied by S3"):
        _open(env).packages.write(key, b"x")
    assert not _stored(target, f"not-ours/{key}")


def test_another_bucket_is_denied(target: LocalTarget, pod_env: dict[str, str]) -> None:
    target.admin_client().create_bucket(Bucket="someone-elses-bucket")
    env = {**pod_env, "STORAGE_AWS_BUCKET": "someone-elses-bucket"}
    key = _key()
    with pytest.raises(PermissionDenied):
        _open(env).packages.write(key, b"x")
    listing = target.admin_client().list_objects_v2(Bucket="someone-elses-bucket")
    assert not listing.get("Contents")


def test_a_missing_token_file_names_the_file(pod_env: dict[str, str], tmp_path: Path) -> None:
    env = {**pod_env, "AWS_WEB_IDENTITY_TOKEN_FILE": str(tmp_path / "no-token")}
    with pytest.raises(PermissionDenied) as caught:
        _open(env).packages.read("x")
    assert isinstance(caught.value.cause, TokenFileError)
    assert str(tmp_path / "no-token") in str(caught.value)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"AWS_ROLE_ARN": "packeton-role"}, "AWS_ROLE_ARN: 'packeton-role' is not an IAM role"),
        ({"AWS_ROLE_ARN": "arn:aws:iam::12:role/x"}, "AWS_ROLE_ARN: "),
    ],
)
def test_a_malformed_role_arn_is_a_config_error(
    pod_env: dict[str, str], changes: dict[str, str], expected: str
) -> None:
    with pytest.raises(ConfigError, match=expected):
        _open({**pod_env, **changes})


def test_a_missing_region_is_a_config_error(pod_env: dict[str, str]) -> None:
    env = {k: v for k, v in pod_env.items() if k not in ("AWS_REGION", "AWS_DEFAULT_REGION")}
    args = json.loads(env["STORAGE_AWS_ARGS"])
    for key in ("region", "stsEndpoint"):
        args.pop(key)
    env["STORAGE_AWS_ARGS"] = json.dumps(args)
    with pytest.raises(ConfigError, match="region is missing"):
        _open(env)


def test_a_token_file_without_a_role_is_a_config_error(pod_env: dict[str, str]) -> None:
    env = {k: v for k, v in pod_env.items() if k != "AWS_ROLE_ARN"}
    env = _with_args(env, webIdentityTokenFile=env["AWS_WEB_IDENTITY_TOKEN_FILE"])
    with pytest.raises(ConfigError, match="needs a role"):
        _open(env)


def test_the_sts_client_has_short_timeouts_and_standard_retries() -> None:
    create = credentials.sts_client_creator(
        botocore.session.Session(), "eu-west-1", "http://127.0.0.1:9"
    )
    # What AssumeRoleWithWebIdentityCredentialFetcher asks for: an unsigned client.
    client = create("sts", config=Config(signature_version=UNSIGNED))
    config = client.meta.config
    assert (config.connect_timeout, config.read_timeout) == (5, 10)
    assert config.retries == {"mode": "standard", "total_max_attempts": 3}
    assert config.signature_version is UNSIGNED
    assert client.meta.endpoint_url == "http://127.0.0.1:9"


@pytest.fixture
def black_hole() -> Iterator[tuple[str, list[socket.socket]]]:
    """A local endpoint that accepts connections and never answers."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                accepted.append(listener.accept()[0])

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}", accepted
    listener.close()
    for connection in accepted:
        connection.close()


def test_a_refresh_against_an_sts_that_never_answers_fails_in_bounded_time(
    black_hole: tuple[str, list[socket.socket]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint, accepted = black_hole
    # The shipped read timeout is 10 s; 0.5 s keeps the test fast with the same retries.
    monkeypatch.setattr(
        credentials, "STS_CONFIG", credentials.STS_CONFIG.merge(Config(read_timeout=0.5))
    )
    token = tmp_path / "token"
    token.write_text("header.payload.signature")
    args = {
        "roleArn": "arn:aws:iam::000000000000:role/satchel",
        "webIdentityTokenFile": str(token),
        "stsEndpoint": endpoint,
        "region": "eu-west-1",
    }
    settings = runtime.load_settings({"STORAGE_SOURCE": "s3", "STORAGE_AWS_ARGS": json.dumps(args)})
    resolved = resolve_credentials(settings.aws_args, {})
    assert resolved.credentials is not None
    start = time.monotonic()
    with pytest.raises(ReadTimeoutError):
        resolved.credentials.get_frozen_credentials()
    elapsed = time.monotonic() - start
    assert len(accepted) == 3  # standard mode: three attempts, then it gives up
    assert elapsed < 3 * 0.5 + 6  # three read timeouts plus standard-mode backoff (jittered)
