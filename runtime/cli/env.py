"""`satchel env`: the settings as resolved from the environment, secrets redacted."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from runtime import load_settings
from runtime.cli.common import JsonOption, errors_reported
from runtime.specs import describe


def env(as_json: JsonOption = False) -> None:
    """Show the env contract's variables as resolved, and where each storage lives."""
    with errors_reported():
        settings = load_settings()
    # public_env() has the secrets redacted already; describe() never includes them.
    variables = settings.public_env()
    storages = {role: describe(spec) for role, spec in settings.storages.items()}
    if as_json:
        typer.echo(json.dumps({"env": variables, "storages": storages}, indent=2))
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
