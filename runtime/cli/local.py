"""`satchel local up|down|env`: the local IRSA target, for people (tests use LocalTarget)."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
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
    serve: Annotated[
        bool,
        typer.Option(
            help="Also run `satchel serve` with the pod's env, mirroring a small "
            "offline Composer repository."
        ),
    ] = False,
    port: Annotated[int, typer.Option(help="Port of `satchel serve` with --serve.")] = 8080,
) -> None:
    """Provision the stack locally and keep it running until Ctrl-C."""
    from infra.config import ConfigKeyError
    from infra.local.runner import run_foreground

    def announce(target: LocalTarget, extras: contextlib.ExitStack) -> None:
        typer.echo(f"Local target for stack '{stack}' is up (S3 + STS at {target.endpoint}).")
        typer.echo(f"  stack outputs: {target.outputs_file}")
        typer.echo(f"  pod env:       {target.env_file}   (use: set -a; . {target.env_file})")
        typer.echo(f"  token file:    {target.token_file}   (rotated like kubelet does)")
        if check and not _check(target):
            typer.echo("The check failed; the target keeps running for you to inspect it.")
        if serve:
            _serve(target, extras, port)
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


def _serve(target: LocalTarget, extras: contextlib.ExitStack, port: int) -> None:
    """The offline upstream, and `satchel serve` on the pod's env (IRSA, no keys)."""
    from infra.local.composer_repo import standard_repo

    upstream = standard_repo().start()
    extras.callback(upstream.stop)
    env = {
        "PATH": os.environ.get("PATH", ""),
        **target.pod_env(),
        "SATCHEL_UPSTREAMS": f"demo={upstream.url}",
    }
    log = (target.state_dir / "serve.log").open("ab")
    extras.callback(log.close)
    process = subprocess.Popen(
        [sys.executable, "-m", "runtime.cli", "serve", "--port", str(port), "--workers", "2"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    extras.callback(_terminate, process)
    url = f"http://127.0.0.1:{port}"
    if not _wait_healthy(url, process):
        typer.echo(f"satchel serve did not start; see {target.state_dir / 'serve.log'}")
        return
    auth = _publish_demo_package(target, port)
    snippet = {
        "require": {"acme/app-lib": "^1.0", DEMO_PACKAGE: "^1.0"},
        "repositories": [{"type": "composer", "url": url}, {"packagist.org": False}],
        "config": {"secure-http": False},
    }
    typer.echo(f"satchel serve is mirroring the offline repository at {url} (log: serve.log)")
    typer.echo(f"and serves the private package {DEMO_PACKAGE} (published just now) to tokens.")
    typer.echo("Point composer at it with this composer.json, then `composer install`:")
    typer.echo(json.dumps(snippet, indent=2))
    typer.echo("with this auth.json beside it (a read token, made for this demo):")
    typer.echo(json.dumps(auth, indent=2))


DEMO_PACKAGE = "demo/private-hello"


def _publish_demo_package(target: LocalTarget, port: int) -> dict[str, object]:
    """A private package (requiring a mirrored one) in the bucket, and a read token."""
    from infra.local.composer_repo import make_zip
    from runtime import load_settings, open_storages
    from runtime.repository import Repository, VersionConflict
    from runtime.tokens import TokenStore

    storages = open_storages(load_settings(target.pod_env()))
    with contextlib.suppress(VersionConflict):  # published by an earlier run of the demo
        Repository(storages.packages, storages.artifacts).publish(
            make_zip(DEMO_PACKAGE, "1.0.0", {"acme/util": "^1.0"})
        )
    token = TokenStore(storages.packages).create(f"demo-{secrets.token_hex(4)}", "read")
    return {"http-basic": {f"127.0.0.1:{port}": {"username": "token", "password": token}}}


def _wait_healthy(url: str, process: subprocess.Popen[bytes]) -> bool:
    import time
    import urllib.request

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        try:
            urllib.request.urlopen(f"{url}/healthz", timeout=1).close()
            return True
        except OSError:
            time.sleep(0.1)
    return False


def _terminate(process: subprocess.Popen[bytes]) -> None:
    process.terminate()  # the server's graceful shutdown
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


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
