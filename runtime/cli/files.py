"""Operator commands on one storage: `ls`, `cat`, `put`, `rm`.

Bodies are streamed in both directions, so a multi-GiB archive never sits in memory.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime
from typing import Annotated, BinaryIO

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from runtime import ObjectInfo
from runtime.cli.common import (
    EXIT_USAGE,
    JsonOption,
    StorageName,
    StorageOption,
    errors_reported,
    fail,
    open_named_storage,
    stderr_is_terminal,
)

CHUNK = 1024 * 1024
# Below this a transfer is over before a bar would be worth drawing.
PROGRESS_MIN_BYTES = 4 * 1024 * 1024

KeyArgument = Annotated[str, typer.Argument(help="Key relative to the storage, e.g. 'a/b.zip'.")]


def ls(
    prefix: Annotated[str, typer.Argument(help="List keys below this directory.")] = "",
    storage: StorageOption = StorageName.packages,
    as_json: JsonOption = False,
) -> None:
    """List objects: size, modification time (UTC) and key, one per line."""
    with errors_reported():
        items = open_named_storage(storage).list(prefix)
        if as_json:
            _echo_json_list(items)
            return
        for info in items:
            typer.echo(f"{info.size:>12}  {_iso(info.modified)}  {info.key}")


def cat(key: KeyArgument, storage: StorageOption = StorageName.packages) -> None:
    """Write an object's bytes to stdout."""
    with errors_reported():
        source = open_named_storage(storage)
        # The size costs a HEAD: only ask for it when someone can see a bar.
        total = source.stat(key).size if stderr_is_terminal() else None
        out = typer.get_binary_stream("stdout")
        with source.open(key) as raw, progress_bar(total) as bar:
            stream = bar.wrap_file(raw, total=total or 0, description=key) if bar else raw
            while chunk := stream.read(CHUNK):
                out.write(chunk)
        out.flush()


def put(
    key: KeyArgument,
    file: Annotated[
        str, typer.Argument(help="File to upload; '-' (the default) reads stdin.")
    ] = "-",
    storage: StorageOption = StorageName.packages,
) -> None:
    """Upload a file (or stdin) to KEY, replacing any object there."""
    with errors_reported():
        target = open_named_storage(storage)
        with _input(file) as raw:
            size = _size_of(raw)
            with progress_bar(size) as bar:
                body = bar.wrap_file(raw, total=size or 0, description=key) if bar else raw
                target.write(key, body)


def rm(key: KeyArgument, storage: StorageOption = StorageName.packages) -> None:
    """Delete an object (deleting a missing key is not an error, as on S3)."""
    with errors_reported():
        open_named_storage(storage).delete(key)


@contextmanager
def progress_bar(total: int | None) -> Iterator[Progress | None]:
    """A transfer bar on stderr for big transfers seen by a person, else None."""
    if total is None or total <= PROGRESS_MIN_BYTES or not stderr_is_terminal():
        yield None
        return
    columns = (
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        yield progress


def _input(file: str) -> nullcontext[BinaryIO] | BinaryIO:
    if file == "-":
        return nullcontext(typer.get_binary_stream("stdin"))  # not ours to close
    try:
        return open(file, "rb")  # the caller's `with` closes it
    except OSError as exc:
        # The user's own input, not the storage: a usage error.
        fail(f"cannot read {file}: {exc.strerror}", EXIT_USAGE)


def _size_of(stream: BinaryIO) -> int | None:
    """The bytes left in a regular file (also stdin redirected from one); None for pipes."""
    try:
        st = os.fstat(stream.fileno())
        return st.st_size - stream.tell() if stat.S_ISREG(st.st_mode) else None
    except (OSError, ValueError):  # no file descriptor (e.g. an in-memory stream)
        return None


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _echo_json_list(items: Iterator[ObjectInfo]) -> None:
    # Streamed item by item: a listing of a big bucket never has to fit in memory.
    typer.echo("[", nl=False)
    for index, info in enumerate(items):
        entry = {
            "key": info.key,
            "size": info.size,
            "etag": info.etag,
            "modified": _iso(info.modified),
        }
        typer.echo(("," if index else "") + "\n  " + json.dumps(entry), nl=False)
    typer.echo("\n]")
