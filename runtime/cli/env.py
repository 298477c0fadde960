"""`satchel env`: the settings as resolved from the environment, secrets redacted."""

from __future__ import annotations

import json
import os

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from runtime import load_settings
from runtime.app.upstream_auth import (
    AUTH_FILE_VARIABLE,
    AUTH_JSON_VARIABLE,
    REDACTED,
    load_upstream_auth,
)
from runtime.cli.common import JsonOption, errors_reported
from runtime.specs import describe


def env(as_json: JsonOption = False) -> None:
    """Show the env contract's variables as resolved, and where each storage lives."""
    with errors_reported():
        settings = load_settings()
        upstream_auth = load_upstream_auth()
    # public_env() has the secrets redacted already; describe() never includes them.
    variables = settings.public_env()
    # Upstream credentials: the variables (COMPOSER_AUTH redacted), hosts and kinds only.
    if os.environ.get(AUTH_JSON_VARIABLE, "").strip():
        variables[AUTH_JSON_VARIABLE] = REDACTED
    if os.environ.get(AUTH_FILE_VARIABLE, "").strip():
        variables[AUTH_FILE_VARIABLE] = os.environ[AUTH_FILE_VARIABLE]
    storages = {role: describe(spec) for role, spec in settings.storages.items()}
    credentials = upstream_auth.hosts()
    if as_json:
        document = {"env": variables, "storages": storages, "upstream_credentials": credentials}
        typer.echo(json.dumps(document, indent=2))
        return

    env_table = Table("variable", "value", title="Environment", title_justify="left")
    for name, value in variables.items():
        # Text(): values are data, never Rich markup ('[...]' in JSON would be eaten).
        env_table.add_row(name, Text(value))
    storage_table = Table(
        "storage", "kind", "location", "endpoint", title="Storages", title_justify="left"
    )
    for role, info in storages.items():
        storage_table.add_row(role, info["kind"], Text(info["location"]), info.get("endpoint", ""))
    console = Console()
    console.print(env_table)
    console.print(storage_table)
    hosts = ", ".join(f"{host} ({kind})" for host, kind in credentials.items()) or "none"
    console.print(Text(f"upstream credentials for: {hosts}"), soft_wrap=True)
