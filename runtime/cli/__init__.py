"""The `satchel` command line: the app and its commands (each in its own module)."""

from __future__ import annotations

import typer

from runtime.cli import doctor, env, files, repository, serve

app = typer.Typer(
    name="satchel",
    help="Satchel: package-repository storage on S3, GCS or a local directory.",
    no_args_is_help=True,
    add_completion=False,
    # Expected failures print one line (runtime.cli.common); never dump locals, they may
    # hold credentials.
    pretty_exceptions_show_locals=False,
)

app.command()(env.env)
app.command()(doctor.doctor)
app.command()(serve.serve)
for command in (files.ls, files.cat, files.put, files.rm):
    app.command()(command)
for repository_command in (repository.publish, repository.unpublish, repository.packages):
    app.command()(repository_command)

from runtime.cli.local import local  # noqa: E402  (after the app it extends)

app.add_typer(local, name="local")

from runtime.cli.cache import cache  # noqa: E402

app.add_typer(cache, name="cache")

from runtime.cli.tokens import tokens  # noqa: E402

app.add_typer(tokens, name="token")

from runtime.cli.mirror import mirror  # noqa: E402

app.add_typer(mirror, name="mirror")
