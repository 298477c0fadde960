"""`satchel cache stats|prune`: the local caches of this host, for operators."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from runtime import load_settings, open_storages
from runtime.archives import ArchiveCache
from runtime.cli.common import JsonOption, errors_reported
from runtime.mirror import MirrorStore, open_mirror

cache = typer.Typer(help="The local mirror and archive caches of this host.")


def _caches() -> tuple[MirrorStore, ArchiveCache]:
    settings = load_settings()
    storages = open_storages(settings)
    return open_mirror(settings, storages), ArchiveCache(storages.packages, settings)


def _row(
    name: str, directory: Path | None, usage: tuple[int, int], bound: int | None
) -> dict[str, Any]:
    return {
        "cache": name,
        "dir": str(directory) if directory else None,
        "entries": usage[0],
        "bytes": usage[1],
        "max_bytes": bound,
    }


@cache.command()
def stats(as_json: JsonOption = False) -> None:
    """Entries and bytes of each cache, and its bound. A cache without a dir is stateless."""
    with errors_reported():
        mirror, archives = _caches()
        rows = [
            _row("mirror-meta", mirror.metadata.directory, mirror.metadata.disk_usage(), None),
            _row(
                "mirror-dist",
                mirror.dists.directory,
                mirror.dists.disk_usage(),
                mirror.dists.max_bytes,
            ),
            _row(
                "archives",
                archives.files.directory,
                archives.files.disk_usage(),
                archives.files.max_bytes,
            ),
        ]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table("cache", "dir", "entries", "bytes", "max bytes")
    for row in rows:
        table.add_row(
            row["cache"],
            row["dir"] or "(stateless)",
            str(row["entries"]),
            str(row["bytes"]),
            "-" if row["max_bytes"] is None else str(row["max_bytes"]),
        )
    Console().print(table)


@cache.command()
def prune(
    everything: Annotated[
        bool, typer.Option("--all", help="Empty the caches (the bucket keeps everything).")
    ] = False,
) -> None:
    """Evict least recently used dists and archives down to their bounds (or all of it)."""
    with errors_reported():
        mirror, archives = _caches()
        removed = freed = 0
        for files in (mirror.dists, archives.files):
            entries, size = files.prune(0 if everything else None)
            removed, freed = removed + entries, freed + size
        if everything:
            entries, size = mirror.metadata.clear()
            removed, freed = removed + entries, freed + size
    typer.echo(f"removed {removed} entries, {freed} bytes")
