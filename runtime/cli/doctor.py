"""`satchel doctor`: renders `runtime.doctor.run_doctor`; exit 0 only when every probe passed."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.text import Text

from runtime import load_settings
from runtime.app.upstream_auth import load_upstream_auth
from runtime.cli.common import EXIT_FAILED, JsonOption, errors_reported
from runtime.doctor import DoctorReport, run_doctor
from runtime.identity import Identity

_MARK = {True: ("✓", "green"), False: ("✗", "red"), None: ("-", "dim")}


def doctor(as_json: JsonOption = False) -> None:
    """Show where credentials come from and probe every storage (write, read, delete)."""
    with errors_reported():
        settings = load_settings()
        upstream_auth = load_upstream_auth()
        report = run_doctor(settings)
    # Which upstream hosts get credentials, and of which kind: never the values.
    hosts = upstream_auth.hosts()
    if as_json:
        typer.echo(json.dumps({**report.as_dict(), "upstream_credentials": hosts}, indent=2))
    else:
        render(report, Console(), hosts)
    raise typer.Exit(0 if report.ok else EXIT_FAILED)


def render(
    report: DoctorReport, console: Console, upstream_hosts: dict[str, str] | None = None
) -> None:
    credentials = report.as_dict()["credentials"]
    line = Text(f"credentials: {credentials.pop('source')}")
    if report.credentials.detail:
        line.append(f" ({report.credentials.detail})")
    for name, value in credentials.items():
        if value:
            line.append(f"\n    {name}: {value}")
    console.print(line, soft_wrap=True)
    if report.identity is not None:
        console.print(_identity_line(report.identity), soft_wrap=True)
    if upstream_hosts is not None:
        listed = ", ".join(f"{host} ({kind})" for host, kind in upstream_hosts.items())
        console.print(Text(f"upstream credentials: {listed or 'none'}"), soft_wrap=True)
    width = max(len(check.location) for check in report.storages.values())
    for role, check in report.storages.items():
        # Text objects throughout: keys, paths and messages are data, never Rich markup.
        line = Text.assemble(
            _mark(check.ok), f" {role:<12} {check.kind:<5} {check.location:<{width}}"
        )
        for step, result in check.steps.items():
            line.append(f" {step} ").append_text(_mark(result))
        console.print(line, soft_wrap=True)
        if check.error:
            console.print(Text(f"    error: {check.error}", style="red"), soft_wrap=True)
        if check.hint:
            console.print(Text(f"    hint:  {check.hint}", style="yellow"), soft_wrap=True)
    failed = sum(not check.ok for check in report.storages.values())
    total = len(report.storages)
    summary = f"{failed} of {total} storages failed" if failed else f"all {total} storages passed"
    console.print(Text(summary, style="bold red" if failed else "bold green"))


def _identity_line(identity: Identity) -> Text:
    if identity.ok:
        return Text(f"identity: {identity.arn} (account {identity.account})")
    if identity.ok is None:
        return Text(f"identity: not checked ({identity.skipped})", style="dim")
    return Text(f"identity: unknown: {identity.error}", style="yellow")


def _mark(result: bool | None) -> Text:
    symbol, style = _MARK[result]
    return Text(symbol, style=style)
