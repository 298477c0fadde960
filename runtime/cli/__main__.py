"""`python -m runtime.cli`: the same CLI as the `satchel` script."""

from runtime.cli import app

app()
