"""`satchel doctor` and `runtime.doctor`: probes, credentials, hints and exit codes."""

from __future__ import annotations

import json
import secrets
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import runtime
from runtime import BackendUnavailable, NotFound, PermissionDenied, Storages
from runtime.doctor import PROBE_DIR, ReadMismatch, hint_for, run_doctor
from runtime.specs import GcsSpec, LocalSpec, S3Spec
from runtime.storage import Storage
from runtime.storage.local import LocalAdapter
from tests.cli_helpers import is_one_error_line, satchel, stored_objects

ORDER = ["packages", "artifacts", "mirror_meta", "mirror_dist"]
ROLES = set(ORDER)
CREDENTIAL_KEYS = {"source", "role_arn", "token_file", "session_name", "expires"}


def doctor_json(env: dict[str, str]) -> tuple[int, dict[str, Any]]:
    result = satchel(env, "doctor", "--json")
    assert result.stderr == ""
    return result.exit_code, json.loads(result.stdout)


def assert_report_shape(report: dict[str, Any]) -> None:
    """The exact document of DESIGN.md: scripts index into it."""
    assert set(report) == {"credentials", "identity", "storages", "ok", "upstream_credentials"}
    assert set(report["credentials"]) == CREDENTIAL_KEYS
    assert set(report["storages"]) == ROLES
    for check in report["storages"].values():
        assert set(check) == {"ok", "kind", "location", "steps", "error", "hint"}
        assert set(check["steps"]) == {"write", "read", "delete"}
        assert all(set(step) == {"ok"} for step in check["steps"].values())
    assert isinstance(report["ok"], bool)


def _with_args(env: dict[str, str], **changes: str) -> dict[str, str]:
    args = json.loads(env["STORAGE_AWS_ARGS"]) | changes
    return {**env, "STORAGE_AWS_ARGS": json.dumps(args)}


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- every storage passes --------------------------------------------------------------------


def test_doctor_passes_every_storage_of_a_local_directory(local_env: dict[str, str]) -> None:
    code, report = doctor_json(local_env)

    assert code == 0
    assert_report_shape(report)
    assert report["ok"] is True
    assert report["credentials"] == dict.fromkeys(CREDENTIAL_KEYS) | {"source": "none"}
    for check in report["storages"].values():
        assert check["ok"] is True and check["kind"] == "local"
        assert check["error"] is None and check["hint"] is None
        assert all(step["ok"] is True for step in check["steps"].values())
    root = local_env["SATCHEL_LOCAL_ROOT"]
    assert report["storages"]["artifacts"]["location"] == f"{root}/artifact"


def test_doctor_passes_every_storage_of_an_s3_bucket(s3_env: dict[str, str]) -> None:
    code, report = doctor_json(s3_env)

    assert code == 0
    assert_report_shape(report)
    assert report["ok"] is True
    assert report["credentials"]["source"] == "static"
    assert {check["kind"] for check in report["storages"].values()} == {"s3"}
    bucket, prefix = s3_env["STORAGE_AWS_BUCKET"], s3_env["STORAGE_AWS_PREFIX"]
    assert report["storages"]["packages"]["location"] == f"s3://{bucket}/{prefix}"


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_doctor_leaves_no_probe_keys_behind(
    request: pytest.FixtureRequest, backend: str, seaweed: Any
) -> None:
    env: dict[str, str] = request.getfixturevalue(f"{backend}_env")

    assert satchel(env, "doctor").exit_code == 0

    assert stored_objects(env) == []
    if backend == "s3":
        listing = seaweed.admin_client().list_objects_v2(
            Bucket=env["STORAGE_AWS_BUCKET"], Prefix=env["STORAGE_AWS_PREFIX"]
        )
        assert listing.get("Contents", []) == []


def test_doctor_prints_a_line_per_storage_for_people(local_env: dict[str, str]) -> None:
    result = satchel(local_env, "doctor")

    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0] == "credentials: none"
    assert lines[1] == "upstream credentials: none"  # hosts and kinds (COMPOSER_AUTH), never values
    for role, line in zip(ORDER, lines[2:6], strict=True):
        assert line.startswith(f"✓ {role} ")
        assert "write ✓" in line and "read ✓" in line and "delete ✓" in line
    assert lines[-1] == "all 4 storages passed"


# --- failures: exit 1, with an error and a hint ---------------------------------------------


def test_a_wrong_secret_fails_every_storage_with_a_credentials_hint(s3_env: dict[str, str]) -> None:
    secret = f"wrong-{secrets.token_hex(16)}"

    code, report = doctor_json(_with_args(s3_env, accessKeySecret=secret))

    assert code == 1
    assert_report_shape(report)
    assert report["ok"] is False
    assert report["credentials"]["source"] == "static"
    for role, check in report["storages"].items():
        assert check["ok"] is False
        assert {k: s["ok"] for k, s in check["steps"].items()} == {
            "write": False,
            "read": None,
            "delete": None,
        }
        assert "access denied" in check["error"] and f"'{role}'" in check["error"]
        assert "credentials" in check["hint"] and "s3:PutObject" in check["hint"]
        assert f"{s3_env['STORAGE_AWS_BUCKET']}/" in check["hint"]
    assert secret not in json.dumps(report)


def test_a_wrong_secret_shows_crosses_errors_and_hints_for_people(s3_env: dict[str, str]) -> None:
    result = satchel(_with_args(s3_env, accessKeySecret="wrong"), "doctor")

    assert result.exit_code == 1
    assert sum(line.startswith("✗ ") for line in result.stdout.splitlines()) == 4
    assert result.stdout.count("    error: ") == 4
    assert result.stdout.count("    hint:  check the credentials") == 4
    assert result.stdout.splitlines()[-1] == "4 of 4 storages failed"


def test_an_unreachable_endpoint_fails_fast_with_an_endpoint_hint(s3_env: dict[str, str]) -> None:
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    started = time.monotonic()

    code, report = doctor_json(_with_args(s3_env, endpoint=endpoint))

    assert time.monotonic() - started < 5
    assert code == 1
    assert_report_shape(report)
    for check in report["storages"].values():
        assert check["ok"] is False
        assert "cannot reach S3" in check["error"]
        assert endpoint in check["hint"] and "STORAGE_AWS_ARGS.endpoint" in check["hint"]


@pytest.fixture
def read_only_packages(tmp_path: Path, mount_tmpfs: Callable[..., Path]) -> dict[str, str]:
    """A local root whose packages directory is a read-only mount; the rest is writable."""
    mount_tmpfs("root/packeton", read_only=True)
    return {"STORAGE_SOURCE": "local", "SATCHEL_LOCAL_ROOT": str(tmp_path / "root")}


def test_a_read_only_local_storage_fails_with_a_local_root_hint(
    read_only_packages: dict[str, str],
) -> None:
    code, report = doctor_json(read_only_packages)

    assert code == 1
    packages = report["storages"]["packages"]
    assert packages["ok"] is False and packages["steps"]["write"]["ok"] is False
    assert "Read-only file system" in packages["error"]
    assert "SATCHEL_LOCAL_ROOT" in packages["hint"]
    assert all(report["storages"][role]["ok"] for role in ROLES - {"packages"})


def test_bad_configuration_exits_2_without_a_report(local_env: dict[str, str]) -> None:
    result = satchel({**local_env, "STORAGE_SOURCE": "ftp"}, "doctor", "--json")

    assert result.exit_code == 2
    assert is_one_error_line(result.stderr) and "STORAGE_SOURCE" in result.stderr
    assert result.stdout == ""


def test_a_local_root_that_is_a_file_exits_2(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    env = {"STORAGE_SOURCE": "local", "SATCHEL_LOCAL_ROOT": str(tmp_path / "file")}

    result = satchel(env, "doctor")

    assert result.exit_code == 2
    assert "SATCHEL_LOCAL_ROOT" in result.stderr


# --- runtime.doctor directly -----------------------------------------------------------------


class _LyingAdapter(LocalAdapter):
    def read(self, key: str) -> bytes:
        return b"not what was written"


def test_a_storage_that_reads_back_other_bytes_fails_the_read_and_still_cleans_up(
    local_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = runtime.load_settings(local_env)
    real = runtime.open_storages(settings)
    root = Path(local_env["SATCHEL_LOCAL_ROOT"])
    lying = Storage("packages", _LyingAdapter(root), real.packages.prefix)
    fake = Storages(lying, real.artifacts, real.mirror_meta, real.mirror_dist)
    monkeypatch.setattr("runtime.doctor.open_storages", lambda _settings: fake)

    report = run_doctor(settings)

    packages = report.storages["packages"]
    assert not report.ok and not packages.ok
    assert packages.steps == {"write": True, "read": False, "delete": True}
    assert packages.error is not None and "differ" in packages.error
    assert packages.hint is not None and "proxy" in packages.hint
    assert list(real.packages.list(PROBE_DIR)) == []


_S3 = S3Spec(bucket="b", prefix="p", args=runtime.load_settings({}).aws_args)
_LOCAL = LocalSpec(root=Path("/srv/satchel"), prefix="packeton")
_GCS = GcsSpec(bucket="g", prefix="p")


@pytest.mark.parametrize(
    ("error", "step", "spec", "expected"),
    [
        (PermissionDenied("x"), "write", _S3, ["s3:DeleteObject", "b/p/*", "credentials"]),
        (NotFound("x"), "write", _S3, ["'b' does not exist", "STORAGE_AWS_BUCKET", "create"]),
        (NotFound("x"), "read", _S3, ["could not be read back", "s3://b/p"]),
        (BackendUnavailable("x"), "delete", _S3, ["endpoint", "AWS_ENDPOINT_URL"]),
        (PermissionDenied("x"), "write", _LOCAL, ["SATCHEL_LOCAL_ROOT", "/srv/satchel/packeton"]),
        (BackendUnavailable("x"), "write", _LOCAL, ["SATCHEL_LOCAL_ROOT", "disk"]),
        (PermissionDenied("x"), "write", _GCS, ["GCS credentials", "gs://g/p"]),
        (NotFound("x"), "write", _GCS, ["'g' does not exist"]),
        (ReadMismatch("x"), "read", _LOCAL, ["differ"]),
    ],
)
def test_hints_name_the_fix(error: Any, step: str, spec: Any, expected: list[str]) -> None:
    settings = runtime.load_settings({"STORAGE_SOURCE": "s3"})

    hint = hint_for(error, step, spec, settings)

    assert hint is not None
    assert all(part in hint for part in expected), hint
