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
from runtime.mirror.budget import Usage

cache = typer.Typer(help="The local mirror and archive caches of this host.")


def _caches() -> tuple[MirrorStore, ArchiveCache]:
    settings = load_settings()
    storages = open_storages(settings)
    return open_mirror(settings, storages), ArchiveCache(storages.packages, settings)


def _row(name: str, directory: Path | None, usage: Usage, bound: int) -> dict[str, Any]:
    return {
        "cache": name,
        "dir": str(directory) if directory else None,
        "entries": usage.entries,
        "bytes": usage.bytes,  # entries and temp files: what the volume holds
        "max_bytes": bound,
        "temp_files": usage.temp_files,  # fills and downloads under way, or left by a crash
        "temp_bytes": usage.temp_bytes,
        "lock_files": usage.lock_files,
    }


@cache.command()
def stats(as_json: JsonOption = False) -> None:
    """Entries, bytes, temp and lock files of each cache, and its bound (shared by every
    process using the directory). A cache without a dir is stateless."""
    with errors_reported():
        mirror, archives = _caches()
        meta, dists, files = mirror.metadata, mirror.dists, archives.files
        rows = [
            _row("mirror-meta", meta.directory, meta.usage(), meta.max_bytes),
            _row("mirror-dist", dists.directory, dists.usage(), dists.max_bytes),
            _row("archives", files.directory, files.usage(), files.max_bytes),
        ]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    columns = ("entries", "bytes", "max_bytes", "temp_files", "temp_bytes", "lock_files")
    table = Table("cache", "dir", *(c.replace("_", " ") for c in columns))
    for row in rows:
        table.add_row(row["cache"], row["dir"] or "(stateless)", *(str(row[c]) for c in columns))
    Console().print(table)


@cache.command()
def prune(
    everything: Annotated[
        bool, typer.Option("--all", help="Empty the caches (the bucket keeps everything).")
    ] = False,
) -> None:
    """Evict least recently used entries down to each cache's bound (or all of it), and
    remove temp files of crashed fills and lock files of older versions."""
    with errors_reported():
        mirror, archives = _caches()
        removed = freed = 0
        for files in (mirror.metadata, mirror.dists, archives.files):
            entries, size = files.prune(0 if everything else None)
            removed, freed = removed + entries, freed + size
    typer.echo(f"removed {removed} files, {freed} bytes")
