"""`satchel serve`: the Composer repository mirror (runtime.app) under granian."""

from __future__ import annotations

from typing import Annotated

import typer

from runtime import load_settings
from runtime.cli.common import errors_reported


def serve(
    host: Annotated[
        str | None, typer.Option(help="Listen address [env SATCHEL_HOST, default 127.0.0.1].")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Listen port [env SATCHEL_PORT, default 8080].")
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="Worker processes [env SATCHEL_WORKERS, default 1].")
    ] = None,
) -> None:
    """Serve a lazy mirror of Composer v2 repositories (SATCHEL_UPSTREAMS) from the bucket."""
    from runtime.app.config import load_serve_config
    from runtime.app.server import refuse_a_port_in_use, run

    with errors_reported():
        config = load_serve_config(host=host, port=port, workers=workers)
        load_settings()  # a bad storage env fails here (exit 2), before anything listens
        refuse_a_port_in_use(config.host, config.port)
    run(config)
