"""`satchel doctor` on the local IRSA target: how it authenticated, or exactly why not."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from infra.local.oidc import SigningKey
from infra.local.target import LocalTarget
from tests.cli_helpers import is_one_error_line, satchel


def doctor(env: dict[str, str]) -> tuple[int, dict[str, Any]]:
    result = satchel(env, "doctor", "--json")
    return result.exit_code, json.loads(result.stdout)


def _hints(report: dict[str, Any]) -> set[str]:
    return {check["hint"] for check in report["storages"].values()}


def test_doctor_reports_irsa_its_role_session_expiry_and_identity(
    target: LocalTarget, pod_env: dict[str, str]
) -> None:
    code, report = doctor(pod_env)
    assert code == 0, json.dumps(report, indent=1)
    credentials = report["credentials"]
    assert credentials["source"] == "web-identity"
    assert credentials["role_arn"] == target.role_arn
    assert credentials["token_file"] == str(target.token_file)
    assert credentials["session_name"].startswith("satchel-")
    assert credentials["expires"]  # temporary credentials: fetched by the probes
    identity = report["identity"]
    assert identity["ok"] is True
    assert target.role_name in identity["arn"]
    assert identity["account"] == "000000000000"
    assert all(check["ok"] for check in report["storages"].values())

    human = satchel(pod_env, "doctor").stdout
    assert "credentials: web-identity (IRSA: roleArn from AWS_ROLE_ARN" in human
    assert f"identity: arn:aws:sts::assumed-role/{target.role_name}/" in human
    assert "all 4 storages passed" in human


def test_doctor_says_static_keys_won(target: LocalTarget, pod_env: dict[str, str]) -> None:
    assert target.seaweed is not None
    args = {
        **json.loads(pod_env["STORAGE_AWS_ARGS"]),
        "accessKeyId": target.seaweed.admin.access_key,
        "accessKeySecret": target.seaweed.admin.secret_key,
    }
    code, report = doctor({**pod_env, "STORAGE_AWS_ARGS": json.dumps(args)})
    assert code == 0
    assert report["credentials"]["source"] == "static"
    assert report["credentials"]["role_arn"] is None


REFUSALS: dict[str, tuple[Callable[[LocalTarget], str], str]] = {
    "other service account": (
        lambda t: t.mint_token(service_account="intruder"),
        "sub=system:serviceaccount:packeton:intruder",
    ),
    "wrong audience": (lambda t: t.mint_token(audience="vault"), "audience"),
    "expired token": (lambda t: t.mint_token(expired=True), "clock skew"),
    "token from the future": (
        lambda t: t.issuer.mint("packeton", "packeton", not_before_in=600),
        "clock is behind",
    ),
    "other signing key": (lambda t: t.mint_token(key=SigningKey.generate()), "signature"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_doctor_explains_each_refused_token(
    target: LocalTarget, pod_env: dict[str, str], case: str
) -> None:
    make_token, expected = REFUSALS[case]
    target.rotate_token(make_token(target))
    code, report = doctor(pod_env)
    assert code == 1
    assert report["ok"] is False
    (hint,) = _hints(report)
    assert expected in hint
    for check in report["storages"].values():
        assert check["steps"]["write"]["ok"] is False
        assert "STS refused" in check["error"]


def test_doctor_names_a_role_that_does_not_exist(pod_env: dict[str, str]) -> None:
    missing = "arn:aws:iam::000000000000:role/no-such-role"
    code, report = doctor({**pod_env, "AWS_ROLE_ARN": missing})
    assert code == 1
    assert _hints(report) == {f"the role {missing} does not exist: check AWS_ROLE_ARN / roleArn"}


def test_doctor_names_a_missing_token_file(pod_env: dict[str, str], tmp_path: Path) -> None:
    missing = tmp_path / "no-token"
    code, report = doctor({**pod_env, "AWS_WEB_IDENTITY_TOKEN_FILE": str(missing)})
    assert code == 1
    (hint,) = _hints(report)
    assert hint.startswith(f"the web identity token file {missing} is missing or unreadable")


def test_doctor_points_at_the_role_policy_for_a_prefix_outside_it(
    target: LocalTarget, pod_env: dict[str, str]
) -> None:
    code, report = doctor({**pod_env, "STORAGE_AWS_ARTIFACT_PREFIX": "elsewhere"})
    assert code == 1
    artifacts = report["storages"]["artifacts"]
    assert artifacts["ok"] is False
    assert f"the role {target.role_arn} may not do this here" in artifacts["hint"]
    assert f"{target.bucket}/elsewhere/*" in artifacts["hint"]
    assert report["storages"]["packages"]["ok"] is True


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"AWS_ROLE_ARN": "packeton-s3-role"}, "AWS_ROLE_ARN: 'packeton-s3-role' is not an IAM"),
        ({"AWS_REGION": "", "AWS_DEFAULT_REGION": "", "STORAGE_AWS_ARGS": "{}"}, "region"),
    ],
)
def test_doctor_exits_2_naming_a_bad_setting(
    pod_env: dict[str, str], changes: dict[str, str], named: str
) -> None:
    result = satchel({**pod_env, **changes}, "doctor", "--json")
    assert result.exit_code == 2
    assert is_one_error_line(result.stderr)
    assert named in result.stderr
