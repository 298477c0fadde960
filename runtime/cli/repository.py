"""`satchel publish`, `satchel unpublish` and `satchel packages`: the private repository,
with the app's env, straight on the bucket (no app needs to run)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from runtime import load_settings, open_storages
from runtime.app.config import load_serve_config
from runtime.cli.common import EXIT_FAILED, EXIT_USAGE, JsonOption, errors_reported, fail
from runtime.repository import InvalidArchive, Repository, VersionConflict


def _repository() -> Repository:
    storages = open_storages(load_settings())
    return Repository(storages.packages, storages.artifacts)


def publish(
    file: Annotated[Path, typer.Argument(help="The package's zip archive.")],
    version: Annotated[
        str | None,
        typer.Option(help='The version; default: the archive\'s composer.json "version".'),
    ] = None,
) -> None:
    """Publish a zip archive as a private package version (immutable once published)."""
    with errors_reported():
        limit = load_serve_config().max_archive_size  # the same bound as the app's uploads
        try:
            if file.stat().st_size > limit:
                fail(f"{file}: larger than SATCHEL_MAX_ARCHIVE_SIZE ({limit} bytes)", EXIT_USAGE)
            data = file.read_bytes()
        except OSError as exc:
            fail(f"{file}: {exc.strerror or exc}", EXIT_USAGE)
        try:
            published = _repository().publish(data, version=version)
        except InvalidArchive as exc:
            fail(f"{file}: {exc}", EXIT_USAGE)
        except VersionConflict as exc:
            fail(exc, EXIT_FAILED)
    state = "published" if published.created else "already published (identical)"
    typer.echo(f"{published.name} {published.version} {state}, sha1 {published.sha1}")


def unpublish(
    name: Annotated[str, typer.Argument(help="vendor/package")],
    version: Annotated[str, typer.Argument(help="The version to remove.")],
) -> None:
    """Remove one version of a private package (its record and its archive)."""
    with errors_reported():
        removed = _repository().unpublish(name.lower(), version)
    if not removed:
        fail(f"{name} {version} is not published", EXIT_FAILED)
    typer.echo(f"{name} {version} unpublished")


def packages(as_json: JsonOption = False) -> None:
    """The private packages and their versions."""
    with errors_reported():
        repository = _repository()
        listing = {
            name: [r["version"] for r in repository.versions(name)] for name in repository.names()
        }
    if as_json:
        typer.echo(json.dumps(listing, indent=2))
        return
    table = Table("package", "versions")
    for name, versions in listing.items():
        table.add_row(name, ", ".join(versions))
    Console().print(table)
