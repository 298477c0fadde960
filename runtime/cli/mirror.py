"""`satchel mirror warm [composer.lock ...]`: seed the bucket before an outage or for an
air-gapped cluster."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import anyio
import typer

from runtime import load_settings
from runtime.cli.common import EXIT_FAILED, EXIT_USAGE, errors_reported, fail, stderr_is_terminal

mirror = typer.Typer(help="The public mirror's bucket contents.")


@mirror.command()
def warm(
    locks: Annotated[
        list[Path] | None, typer.Argument(help="Lock files (default: ./composer.lock).")
    ] = None,
) -> None:
    """Fetch every package document and dist the lock files name into the bucket, from all
    upstreams, skipping what is stored. Exit 1 if anything failed."""
    from runtime.app import create_app
    from runtime.app.config import load_serve_config
    from runtime.app.warm import Locked, Outcome, read_lock
    from runtime.app.warm import warm as run

    with errors_reported():
        config = load_serve_config()
        settings = load_settings()
        packages: list[Locked] = []
        for path in locks or [Path("composer.lock")]:
            try:
                packages += read_lock(path)
            except ValueError as exc:
                fail(exc, EXIT_USAGE)
        unique = list({(p.name, p.version): p for p in packages}.values())
        app = create_app(settings, config)

        async def main() -> Outcome:
            async with app.router.lifespan_context(app):
                services = app.state.services
                if not stderr_is_terminal():
                    return await run(services, unique, lambda _: None)
                from rich.console import Console
                from rich.progress import Progress

                with Progress(console=Console(stderr=True), transient=True) as bar:
                    task = bar.add_task("warming", total=len(unique))
                    return await run(services, unique, lambda _: bar.advance(task))

        outcome = anyio.run(main)
    for failure in outcome.failures:
        typer.echo(f"satchel: warm: {failure}", err=True)
    typer.echo(outcome.summary())
    if outcome.failures:
        raise typer.Exit(EXIT_FAILED)
