"""What every command shares: the exception-to-exit-code mapping and the storage option."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from typing import Annotated, NoReturn

import typer

from runtime import ConfigError, InvalidKey, Storage, StorageError, load_settings, open_storages

# Exit codes (DESIGN.md): 0 ok, 1 a check or operation failed, 2 bad configuration or usage.
EXIT_FAILED = 1
EXIT_USAGE = 2


class StorageName(StrEnum):
    packages = "packages"
    artifacts = "artifacts"
    mirror_meta = "mirror-meta"
    mirror_dist = "mirror-dist"


StorageOption = Annotated[
    StorageName, typer.Option("--storage", "-s", help="Which storage to use.")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]


def fail(message: object, code: int) -> NoReturn:
    # One line, always: scripts grep stderr, and a key may not smuggle a newline in.
    text = " ".join(str(message).splitlines())
    typer.echo(f"satchel: error: {text}", err=True)
    raise typer.Exit(code)


@contextmanager
def errors_reported() -> Iterator[None]:
    """Turn the runtime's exceptions into one stderr line and the contract's exit code.

    The exceptions' messages already name the variable, or the storage and key, and never a
    secret, so they are printed as they are; there is no traceback for an expected failure.
    """
    try:
        yield
    except (ConfigError, InvalidKey) as exc:
        fail(exc, EXIT_USAGE)
    except StorageError as exc:
        fail(exc, EXIT_FAILED)


def open_named_storage(name: StorageName) -> Storage:
    """The storage called `name`, from the settings in os.environ (call inside errors_reported)."""
    return open_storages(load_settings()).by_role(name.value)


def stderr_is_terminal() -> bool:
    # Progress bars only for people: never in pipes, logs or CI output.
    return sys.stderr.isatty()
