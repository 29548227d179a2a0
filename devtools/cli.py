"""The `retailflow` command line as installed: the production commands of `starters.cli` plus the development
ones (the local stack, the demo, seed, send, histories for replay tests, benchmarks).

Where nothing is configured and a `retailflow dev` stack runs on the data folder, every command uses its database
and Temporal (a filler registered with starters.cli).
"""
from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import typer

from config.settings import Settings
from starters.cli import (
    SETTINGS_FILLERS,
    echo_json,
    logging_for,
    main,
    need_database,
    run,
    settings,
    with_running_stack,
)

histories_app = typer.Typer(help="Workflow histories for replay tests.", no_args_is_help=True)
main.add_typer(histories_app, name="histories")


def running_stack_settings(s: Settings) -> Settings:
    """Fill in the database URL / Temporal address of a running dev stack where none is configured."""
    from devtools.stack import running_stack

    state = running_stack(s.data_dir)
    if state is None:
        return s
    update: dict[str, Any] = {}
    if not s.database_url and state.get("database_url"):
        update["database_url"] = state["database_url"]
    if "temporal_address" not in s.model_fields_set and state.get("temporal_address"):
        update["temporal_address"] = state["temporal_address"]
    return s.model_copy(update=update)


SETTINGS_FILLERS.append(running_stack_settings)


# ---- the stack -----------------------------------------------------------------------------------------------
@main.command()
def dev(
    data_dir: Path = typer.Option(None, help="Data folder (default RETAILFLOW_DATA_DIR or .retailflow/)."),
    postgres_port: int = typer.Option(None, envvar="RETAILFLOW_DEV_POSTGRES_PORT",
                                      help="Port of the embedded PostgreSQL (default 5433, then remembered)."),
    skip: list[str] = typer.Option([], "--skip", help="Leave a part out (postgres, temporal, worker, api), e.g. "
                                                       "to run the worker from your IDE against the stack."),
) -> None:
    """The whole local stack: Temporal dev server with UI, PostgreSQL, worker and HTTP service. Ctrl-C stops it."""
    from devtools.stack import PARTS, run_dev

    unknown = set(skip) - set(PARTS)
    if unknown:
        typer.echo(f"error: unknown part(s) {sorted(unknown)}; parts are {', '.join(PARTS)}", err=True)
        raise typer.Exit(2)
    s = settings()
    if data_dir is not None:
        s = s.model_copy(update={"data_dir": data_dir})
    logging_for("dev", s)
    raise typer.Exit(asyncio.run(run_dev(s, postgres_port=postgres_port,
                                      parts=[p for p in PARTS if p not in skip])))


@main.command()
def demo(
    exit_after: bool = typer.Option(False, "--exit",
                                    help="Stop the stack after the summary (default: keep it up for the UI)."),
    orders: int = typer.Option(200, help="Orders in the day (transfers and returns scale with it)."),
    postgres_port: int = typer.Option(None, envvar="RETAILFLOW_DEV_POSTGRES_PORT",
                                      help="Port of the embedded PostgreSQL (default 5433, then remembered)."),
) -> None:
    """The dev stack plus a retail day through the webhooks, then a summary (exit 1 if anything is off)."""
    from devtools.demo import run_demo
    from devtools.traffic import DayPlan

    s = settings()
    logging_for("demo", s)
    raise typer.Exit(run(run_demo(s, exit_after=exit_after, plan=DayPlan.scaled(orders),
                                  postgres_port=postgres_port)) or 0)


@main.command()
def seed() -> None:
    """Load the demo master data and opening stock (idempotent; migrates the database first)."""
    from devtools.seed import seed as do_seed

    url = need_database(with_running_stack(settings()))
    report = asyncio.run(do_seed(url))
    echo_json(report.model_dump())


@main.command()
def send(
    event_file: Path = typer.Argument(..., exists=True, dir_okay=False, help="The event body as JSON."),
    source: str = typer.Option(..., "--source", help="The webhook source (web, pos, wms, ...)."),
) -> None:
    """Sign one event with the source's secret and POST it to the webhook endpoint; prints the answer."""
    from devtools.send import send_file
    s = with_running_stack(settings())
    if not s.webhook_secrets and "webhook_secrets" not in s.model_fields_set:
        from devtools.stack import dev_settings, running_stack

        if running_stack(s.data_dir):  # the dev stack's documented secrets
            s = dev_settings(s)
    try:
        response = send_file(event_file, source, s)
    except ValueError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    echo_json({"status": response.status_code, "body": body})
    raise typer.Exit(0 if response.status_code < 400 else 1)


@histories_app.command("export")
def histories_export(
    workflow_ids: list[str] = typer.Argument(..., help="Workflow IDs to export."),
    dest: Path = typer.Option(None, help="Folder (default tests/histories/)."),
) -> None:
    """Export workflow histories (into tests/histories/<type>/) for the replay tests."""
    from devtools.histories import export

    async def go() -> list[Path]:
        from client.connect import connect

        client = await connect(with_running_stack(settings()))
        return await (export(client, workflow_ids, dest) if dest else export(client, workflow_ids))

    for path in asyncio.run(go()):
        typer.echo(str(path))


@main.command()
def replay(path: Path = typer.Argument(None, help="A history file or folder (default tests/histories/).")) -> None:
    """Replay stored histories against today's workflow code; exits 1 on any nondeterminism."""
    from devtools import histories

    files = histories.history_files(path) if path else histories.history_files()
    if not files:
        typer.echo("no histories to replay")
        return
    outcomes = asyncio.run(histories.replay(files))
    failed = 0
    for outcome in outcomes:
        typer.echo(f"{'FAIL' if outcome.error else 'ok  '} {outcome.path}" + (f"  {outcome.error}" if outcome.error else ""))
        failed += bool(outcome.error)
    typer.echo(f"{len(outcomes) - failed} of {len(outcomes)} replayed cleanly")
    raise typer.Exit(1 if failed else 0)


@main.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
              add_help_option=False)
def bench(ctx: typer.Context) -> None:
    """Benchmarks on a stack of their own: ceiling, lifecycles, latency, cost, scale (`retailflow bench --help`)."""
    # A fresh interpreter of its own (`python -m bench`): what the CLI imported is not in its measurements.
    raise typer.Exit(subprocess.call([sys.executable, "-m", "bench", *ctx.args]))


if __name__ == "__main__":
    sys.exit(main())
