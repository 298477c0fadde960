"""`satchel local up|down|env`: the local IRSA target, for people (tests use LocalTarget)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from runtime.cli.common import EXIT_FAILED, EXIT_USAGE, fail

if TYPE_CHECKING:
    from infra.local.target import LocalTarget

local = typer.Typer(help="The local target: S3 + STS + an OIDC issuer on 127.0.0.1.")

StateDir = Annotated[
    Path, typer.Option("--state-dir", help="Where the target keeps data, token and outputs.")
]
DEFAULT_STATE_DIR = Path("var/local")


@local.command()
def up(
    stack: Annotated[str, typer.Option(help="Stack whose Pulumi.<stack>.yaml to use.")] = "dev",
    config_root: Annotated[
        Path, typer.Option(help="Directory holding Pulumi.<stack>.yaml.")
    ] = Path("."),
    state_dir: StateDir = DEFAULT_STATE_DIR,
    check: Annotated[
        bool, typer.Option(help="Run `satchel doctor` and a round trip with the pod's env.")
    ] = False,
) -> None:
    """Provision the stack locally and keep it running until Ctrl-C."""
    from infra.config import ConfigKeyError
    from infra.local.runner import run_foreground

    def announce(target: LocalTarget) -> None:
        typer.echo(f"Local target for stack '{stack}' is up (S3 + STS at {target.endpoint}).")
        typer.echo(f"  stack outputs: {target.outputs_file}")
        typer.echo(f"  pod env:       {target.env_file}   (use: set -a; . {target.env_file})")
        typer.echo(f"  token file:    {target.token_file}   (rotated like kubelet does)")
        if check and not _check(target):
            typer.echo("The check failed; the target keeps running for you to inspect it.")
        typer.echo("Press Ctrl-C to stop every process this started.")

    try:
        run_foreground(stack, config_root, state_dir, announce)
    except (ConfigKeyError, FileNotFoundError) as exc:
        fail(f"stack config: {exc}", EXIT_USAGE)
    typer.echo("Local target stopped.")


@local.command()
def down(state_dir: StateDir = DEFAULT_STATE_DIR) -> None:
    """Stop a target started with `satchel local up` in another terminal."""
    from infra.local.runner import stop_running

    if not stop_running(state_dir):
        fail(f"no local target is running for {state_dir}", EXIT_FAILED)
    typer.echo("Local target stopped.")


@local.command("env")
def env_(state_dir: StateDir = DEFAULT_STATE_DIR) -> None:
    """Print the env a pod gets (the stack's env plus what EKS injects for IRSA)."""
    path = state_dir / "pod.env"
    if not path.exists():
        fail(f"{path} does not exist; run `satchel local up` first", EXIT_FAILED)
    typer.echo(path.read_text(), nl=False)


def _check(target: LocalTarget) -> bool:
    """Run doctor and a put/cat round trip in child processes with exactly the pod's env."""
    env = {"PATH": os.environ.get("PATH", ""), **target.pod_env()}
    satchel = [sys.executable, "-m", "runtime.cli"]
    doctor = subprocess.run([*satchel, "doctor"], env=env, check=False)
    payload = b"hello from the local target\n"
    put = subprocess.run(
        [*satchel, "put", "demo/hello.txt", "-"], env=env, input=payload, check=False
    )
    cat = subprocess.run(
        [*satchel, "cat", "demo/hello.txt"], env=env, capture_output=True, check=False
    )
    round_trip = put.returncode == 0 and cat.stdout == payload
    typer.echo(f"round trip put/cat demo/hello.txt: {'ok' if round_trip else 'FAILED'}")
    return doctor.returncode == 0 and round_trip
