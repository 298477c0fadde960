"""`satchel token create|list|revoke`: API tokens of the private repository (stored as
hashes in the packages storage; a token is printed once, at creation)."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from runtime import load_settings, open_storages
from runtime.cli.common import EXIT_FAILED, EXIT_USAGE, JsonOption, errors_reported, fail
from runtime.tokens import SCOPES, TokenError, TokenStore

tokens = typer.Typer(help="API tokens of the private repository.", no_args_is_help=True)


def _store() -> TokenStore:
    return TokenStore(open_storages(load_settings()).packages)


@tokens.command()
def create(
    name: Annotated[str, typer.Option(help="A name to list and revoke it by.")],
    scope: Annotated[str, typer.Option(help=f"One of {', '.join(SCOPES)}.")] = "read",
) -> None:
    """Create a token and print it (once, on stdout: it is stored as a hash only)."""
    with errors_reported():
        try:
            token = _store().create(name, scope)
        except TokenError as exc:
            fail(exc, EXIT_USAGE)
    typer.echo(token)


@tokens.command("list")
def list_tokens(as_json: JsonOption = False) -> None:
    """The tokens' names, scopes and creation times (never the tokens or their hashes)."""
    with errors_reported():
        records = [record.public() for record in _store().list()]
    if as_json:
        typer.echo(json.dumps(records, indent=2))
        return
    table = Table("name", "scope", "created")
    for record in records:
        table.add_row(record["name"], record["scope"], record["created"])
    Console().print(table)


@tokens.command()
def revoke(name: Annotated[str, typer.Argument(help="The token's name.")]) -> None:
    """Revoke a token: every replica refuses it within SATCHEL_PRIVATE_TTL seconds."""
    with errors_reported():
        revoked = _store().revoke(name)
    if not revoked:
        fail(f"no token named {name!r}", EXIT_FAILED)
    typer.echo(f"token {name!r} revoked")
