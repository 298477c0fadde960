"""The `satchel` file commands and `env`, on a local directory and on S3 (SeaweedFS).

Every invocation gets an isolated environment: the developer's own STORAGE_* / AWS_* variables
are removed, so a test sees exactly the variables it sets.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import Result

from infra.local.seaweedfs import SeaweedFS
from tests.cli_helpers import is_one_error_line, satchel, satchel_process, stored_objects


@pytest.fixture(params=["local", "s3"])
def env(request: pytest.FixtureRequest) -> dict[str, str]:
    # Both give every test its own four storages (a fresh directory, or fresh prefixes).
    env: dict[str, str] = request.getfixturevalue(f"{request.param}_env")
    return env


@pytest.fixture
def s3_only_env(s3_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    # A local root too, so a test can check that nothing landed on disk either.
    return {**s3_env, "SATCHEL_LOCAL_ROOT": str(tmp_path / "root")}


@pytest.fixture
def read_only_dir(mount_tmpfs: Callable[..., Path]) -> Path:
    # A real read-only mount: the tests run as root, which ignores permission bits.
    return mount_tmpfs("ro", read_only=True)


# --- put / cat / ls / rm -------------------------------------------------------------------


def test_put_cat_ls_and_rm_round_trip(env: dict[str, str], tmp_path: Path) -> None:
    source = tmp_path / "pkg.zip"
    source.write_bytes(b"zip bytes")

    assert satchel(env, "put", "vendor/pkg/1.0.zip", str(source)).exit_code == 0
    assert satchel(env, "cat", "vendor/pkg/1.0.zip").stdout_bytes == b"zip bytes"

    listed = satchel(env, "ls")
    assert listed.exit_code == 0
    size, modified, key = listed.stdout.split()
    assert (size, key) == ("9", "vendor/pkg/1.0.zip")
    assert modified.endswith("Z") and modified[4] == "-" and modified[10] == "T"
    assert satchel(env, "ls", "vendor/pkg").stdout == listed.stdout
    assert satchel(env, "ls", "other").stdout == ""

    assert satchel(env, "rm", "vendor/pkg/1.0.zip").exit_code == 0
    assert satchel(env, "ls").stdout == ""
    assert stored_objects(env) == []


def test_ls_json_lists_key_size_etag_and_modified(env: dict[str, str]) -> None:
    satchel(env, "put", "a/1.txt", input=b"one")
    satchel(env, "put", "a/2.txt", input=b"second")

    result = satchel(env, "ls", "--json")

    assert result.exit_code == 0
    entries = json.loads(result.stdout)
    assert [(e["key"], e["size"]) for e in entries] == [("a/1.txt", 3), ("a/2.txt", 6)]
    assert all(set(e) == {"key", "size", "etag", "modified"} for e in entries)
    assert all(e["etag"] and e["modified"].endswith("Z") for e in entries)
    assert json.loads(satchel(env, "ls", "--json", "nothing/here").stdout) == []


def test_put_reads_stdin_by_default_and_cat_writes_raw_bytes(env: dict[str, str]) -> None:
    payload = bytes(range(256)) * 4 + b"\r\n\x00"

    assert satchel(env, "put", "bin/data", input=payload).exit_code == 0
    assert satchel(env, "put", "bin/dash", "-", input=payload).exit_code == 0

    assert satchel(env, "cat", "bin/data").stdout_bytes == payload
    assert satchel(env, "cat", "bin/dash").stdout_bytes == payload


def test_binary_data_through_the_real_stdin_and_stdout_pipes(env: dict[str, str]) -> None:
    # Over the progress threshold and several 1 MiB chunks; stderr is a pipe, so no bar.
    payload = secrets.token_bytes(5 * 1024 * 1024 + 3)

    put = satchel_process(env, "put", "big/archive.zip", input=payload)
    assert put.returncode == 0, put.stderr
    cat = satchel_process(env, "cat", "big/archive.zip")

    assert cat.returncode == 0, cat.stderr
    assert cat.stdout == payload
    assert cat.stderr == b""


def test_progress_bars_leave_the_data_intact(
    env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("runtime.cli.files.stderr_is_terminal", lambda: True)
    monkeypatch.setattr("runtime.cli.files.PROGRESS_MIN_BYTES", 1000)
    payload = secrets.token_bytes(3 * 1024 * 1024 + 5)
    source = tmp_path / "upload.bin"
    source.write_bytes(payload)

    assert satchel(env, "put", "p.bin", str(source)).exit_code == 0
    result = satchel(env, "cat", "p.bin")

    assert result.exit_code == 0
    assert result.stdout_bytes == payload


def test_storage_option_selects_an_isolated_storage(env: dict[str, str]) -> None:
    assert satchel(env, "put", "same.txt", "--storage", "artifacts", input=b"art").exit_code == 0
    satchel(env, "put", "same.txt", "--storage", "mirror-meta", input=b"meta")

    assert satchel(env, "cat", "same.txt", "--storage", "artifacts").stdout_bytes == b"art"
    assert satchel(env, "cat", "same.txt", "--storage", "mirror-meta").stdout_bytes == b"meta"
    assert satchel(env, "cat", "same.txt").exit_code == 1
    assert satchel(env, "ls").stdout == ""
    assert satchel(env, "ls", "-s", "mirror-dist").stdout == ""
    assert satchel(env, "ls", "--storage", "artifacts").stdout.split()[-1] == "same.txt"
    assert sorted(stored_objects(env)) == [("artifacts", "same.txt"), ("mirror_meta", "same.txt")]

    satchel(env, "rm", "same.txt", "--storage", "artifacts")
    assert stored_objects(env) == [("mirror_meta", "same.txt")]


def test_cat_of_a_missing_key_fails_naming_the_storage_and_key(env: dict[str, str]) -> None:
    result = satchel(env, "cat", "missing/file.zip", "--storage", "artifacts")

    assert result.exit_code == 1
    assert is_one_error_line(result.stderr)
    assert "'artifacts'" in result.stderr and "'missing/file.zip'" in result.stderr
    assert result.stdout == ""


def test_rm_of_a_missing_key_is_not_an_error(env: dict[str, str]) -> None:
    assert satchel(env, "rm", "never/written").exit_code == 0


def test_an_unknown_storage_name_is_a_usage_error(local_env: dict[str, str]) -> None:
    result = satchel(local_env, "ls", "--storage", "cache")

    assert result.exit_code == 2
    assert "cache" in result.stderr


def test_put_of_a_missing_file_is_a_usage_error(local_env: dict[str, str], tmp_path: Path) -> None:
    result = satchel(local_env, "put", "k", str(tmp_path / "nope.zip"))

    assert result.exit_code == 2
    assert is_one_error_line(result.stderr)
    assert "nope.zip" in result.stderr
    assert stored_objects(local_env) == []


# --- bad configuration and bad keys: exit 2, one line, nothing written ---------------------


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"STORAGE_AWS_ARGS": "{not json"}, ["STORAGE_AWS_ARGS", "not valid JSON"]),
        ({"STORAGE_AWS_ARGS": '["region", "x"]'}, ["STORAGE_AWS_ARGS", "JSON object", "list"]),
        ({"STORAGE_AWS_ARGS": '"eu-west-1"'}, ["STORAGE_AWS_ARGS", "JSON object", "str"]),
        (
            {"STORAGE_AWS_ARGS": '{"regoin": "eu-west-1"}'},
            ["STORAGE_AWS_ARGS", "'regoin'", "allowed keys", "region", "pathStyleEndpoint"],
        ),
        (
            {"STORAGE_AWS_ARGS": '{"pathStyleEndpoint": "yes"}'},
            ["STORAGE_AWS_ARGS", "pathStyleEndpoint", "true or false"],
        ),
        ({"STORAGE_SOURCE": "ftp"}, ["STORAGE_SOURCE", "'ftp'"]),
        ({"STORAGE_SOURCE": "s3", "STORAGE_AWS_BUCKET": ""}, ["STORAGE_AWS_BUCKET", "empty"]),
    ],
    ids=[
        "args-not-json",
        "args-array",
        "args-string",
        "args-unknown-key",
        "args-path-style-yes",
        "unknown-source",
        "empty-bucket",
    ],
)
def test_bad_configuration_exits_2_with_one_line_naming_the_variable(
    s3_only_env: dict[str, str], overrides: dict[str, str], expected: list[str]
) -> None:
    for command in (["put", "k.txt"], ["ls"], ["cat", "k.txt"], ["rm", "k.txt"]):
        result = satchel({**s3_only_env, **overrides}, *command, input=b"data")

        assert result.exit_code == 2, command
        assert is_one_error_line(result.stderr), result.stderr
        assert all(part in result.stderr for part in expected), result.stderr
        assert result.stdout == ""
    assert stored_objects(s3_only_env) == []
    assert not Path(s3_only_env["SATCHEL_LOCAL_ROOT"]).exists()


@pytest.mark.parametrize(
    "key",
    ["../escape", "a/../../escape", "nul\x00byte", "line\nbreak", "bell\x07", "k" * 1100],
    ids=["dotdot", "nested-dotdot", "nul", "newline", "control", "over-1024-bytes"],
)
def test_bad_keys_exit_2_with_one_line_and_nothing_written(env: dict[str, str], key: str) -> None:
    for command in (["put", key], ["cat", key], ["rm", key], ["ls", key]):
        result = satchel(env, *command, input=b"data")

        assert result.exit_code == 2, command
        assert is_one_error_line(result.stderr), result.stderr
        assert "key" in result.stderr
        assert "\x00" not in result.stderr and "\x07" not in result.stderr
    assert stored_objects(env) == []


def test_local_root_pointing_at_a_file_exits_2(tmp_path: Path) -> None:
    root = tmp_path / "a-file"
    root.write_text("not a directory")
    env = {"STORAGE_SOURCE": "local", "SATCHEL_LOCAL_ROOT": str(root)}

    result = satchel(env, "put", "k", input=b"data")

    assert result.exit_code == 2
    assert is_one_error_line(result.stderr)
    assert "SATCHEL_LOCAL_ROOT" in result.stderr and str(root) in result.stderr
    assert root.read_text() == "not a directory"


@pytest.mark.parametrize("below", ["", "storage"], ids=["the-mount", "a-dir-below-it"])
def test_local_root_on_a_read_only_filesystem_exits_2(read_only_dir: Path, below: str) -> None:
    env = {"STORAGE_SOURCE": "local", "SATCHEL_LOCAL_ROOT": str(read_only_dir / below)}

    result = satchel(env, "put", "k", input=b"data")

    assert result.exit_code == 2
    assert is_one_error_line(result.stderr)
    assert "SATCHEL_LOCAL_ROOT" in result.stderr
    assert list(read_only_dir.iterdir()) == []


# --- env -------------------------------------------------------------------------------------


def test_env_json_shows_the_resolved_variables_and_storages(s3_only_env: dict[str, str]) -> None:
    result = satchel(s3_only_env, "env", "--json")

    assert result.exit_code == 0
    document = json.loads(result.stdout)
    assert set(document) == {"env", "storages", "upstream_credentials"}
    assert document["env"]["STORAGE_SOURCE"] == "s3"
    assert document["env"]["STORAGE_AWS_PREFIX"] == s3_only_env["STORAGE_AWS_PREFIX"]
    assert json.loads(document["env"]["STORAGE_AWS_ARGS"])["accessKeySecret"] == "**********"
    assert set(document["storages"]) == {"packages", "artifacts", "mirror_meta", "mirror_dist"}
    packages = document["storages"]["packages"]
    bucket, prefix = s3_only_env["STORAGE_AWS_BUCKET"], s3_only_env["STORAGE_AWS_PREFIX"]
    assert packages["kind"] == "s3"
    assert packages["location"] == f"s3://{bucket}/{prefix}"


def test_env_prints_tables_for_people(local_env: dict[str, str]) -> None:
    result = satchel(local_env, "env")

    assert result.exit_code == 0
    for text in ("STORAGE_SOURCE", "SATCHEL_LOCAL_ROOT", "packages", "mirror_dist", "local"):
        assert text in result.stdout


def test_env_with_bad_configuration_exits_2(local_env: dict[str, str]) -> None:
    result = satchel({**local_env, "STORAGE_AWS_ARGS": "{"}, "env", "--json")

    assert result.exit_code == 2
    assert is_one_error_line(result.stderr)
    assert result.stdout == ""


# --- secrets never appear ----------------------------------------------------------------------


def _with_args(env: dict[str, str], **changes: str) -> dict[str, str]:
    args = json.loads(env["STORAGE_AWS_ARGS"]) | changes
    return {**env, "STORAGE_AWS_ARGS": json.dumps(args)}


def _all_output(env: dict[str, str]) -> Iterator[tuple[list[str], Result]]:
    commands = [
        ["env"],
        ["env", "--json"],
        ["doctor"],
        ["doctor", "--json"],
        ["put", "k.txt"],
        ["cat", "k.txt"],
        ["ls"],
        ["rm", "k.txt"],
    ]
    for command in commands:
        yield command, satchel(env, *command, input=b"data")


def test_the_real_secret_never_appears_in_any_output(
    s3_only_env: dict[str, str], seaweed: SeaweedFS
) -> None:
    for command, result in _all_output(s3_only_env):
        assert result.exit_code == 0, (command, result.stderr)
        assert seaweed.admin.secret_key not in result.stdout + result.stderr, command


def test_a_wrong_secret_and_session_token_never_appear_in_any_output(
    s3_only_env: dict[str, str],
) -> None:
    secret, token = f"wrong-{secrets.token_hex(16)}", f"token-{secrets.token_hex(16)}"
    env = _with_args(s3_only_env, accessKeySecret=secret, sessionToken=token)

    for command, result in _all_output(env):
        output = result.stdout + result.stderr
        assert secret not in output and token not in output, command
        if command[0] in ("put", "cat", "ls", "rm"):
            assert result.exit_code == 1, command
            assert is_one_error_line(result.stderr), result.stderr
            assert "access denied" in result.stderr


def test_a_secret_in_invalid_args_is_not_echoed(local_env: dict[str, str]) -> None:
    secret = f"s3cr3t-{secrets.token_hex(8)}"
    bad = {"accessKeyId": "AKIA", "accessKeySecret": secret, "pathStyleEndpoint": "yes"}
    for args in (bad, {"accessKeySecret": [secret]}, {"sessionToken": {"v": secret}}):
        env = {**local_env, "STORAGE_AWS_ARGS": json.dumps(args)}
        for command in (["env"], ["doctor", "--json"], ["ls"]):
            result = satchel(env, *command)

            assert result.exit_code == 2
            assert secret not in result.stdout + result.stderr
