"""Running the `satchel` CLI in tests: in process (CliRunner) or as the installed script."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from typer.testing import CliRunner, Result

import runtime
from runtime.cli import app

SATCHEL = str(Path(sys.executable).parent / "satchel")
# Every variable family the CLI reads: the contract's, ours, AWS's and Google's.
_READ_PREFIXES = ("STORAGE_", "SATCHEL_", "MIRROR_", "AWS_", "GOOGLE_", "COMPOSER_")


def isolated_env(env: Mapping[str, str]) -> dict[str, str | None]:
    """`env` plus None (= unset) for every inherited variable the CLI could read."""
    unset: dict[str, str | None] = {
        name: None for name in os.environ if name.startswith(_READ_PREFIXES)
    }
    return {**unset, **env}


def satchel(env: Mapping[str, str], *args: str, input: bytes | None = None) -> Result:
    return CliRunner().invoke(
        app, list(args), input=input, env=isolated_env(env), catch_exceptions=False
    )


def satchel_process(
    env: Mapping[str, str], *args: str, input: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    """The installed console script, for real binary pipes."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(_READ_PREFIXES)}
    return subprocess.run(
        [SATCHEL, *args], input=input, env={**base, **env}, capture_output=True, timeout=60
    )


def stored_objects(env: Mapping[str, str]) -> list[tuple[str, str]]:
    """(storage, key) of every object in the four storages of a valid env."""
    storages = runtime.open_storages(runtime.load_settings(env))
    return [(role, info.key) for role, storage in storages.items() for info in storage.list()]


def is_one_error_line(stderr: str) -> bool:
    return stderr.startswith("satchel: error: ") and stderr.count("\n") == 1
