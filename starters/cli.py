"""The production `retailflow` commands (worker, api, migrate, check, status, exceptions, counts); `devtools.cli`
adds the development ones. Commands import what they run in their bodies, so `retailflow --help` loads Typer
and the settings only: `python -c 'import starters.cli'` took 3.1-4.7 s, and importing up front what the
commands import took 15-24 s more (measured on the shared 2-core machine under load, 2026-12-01)."""
from __future__ import annotations

import asyncio
import inspect
import json
import os
import sys
from collections.abc import Callable
from typing import Any

import typer

from config.settings import Settings

main = typer.Typer(
    name="retailflow",
    help="Durable Temporal workflows for retail inventory: reserve-to-fulfill, ship-to-settle, transfer, "
         "return-to-refund, receive-to-stock, count-to-adjust, vendor return.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
exceptions_app = typer.Typer(help="Exception cases opened by SLA breaches: list and resolve.", no_args_is_help=True)
main.add_typer(exceptions_app, name="exceptions")
counts_app = typer.Typer(help="Cycle counts beyond tolerance: approve or reject their adjustment.",
                         no_args_is_help=True)
main.add_typer(counts_app, name="counts")


def settings() -> Settings:
    """The settings from the environment; an invalid one (a `whsec_` secret that is not base64, a token name
    that is reserved) ends the command with the setting and the reason, not a traceback."""
    from pydantic import ValidationError

    try:
        return Settings()
    except ValidationError as bad:
        for error in bad.errors():
            where = ".".join(str(p) for p in error.get("loc", ())) or "settings"
            typer.echo(f"error: RETAILFLOW_{where.split('.')[0].upper()}: {error.get('msg')}", err=True)
        raise typer.Exit(2) from None


# How a command fills in what is not configured (the dev tooling adds: "the running dev stack's database and
# Temporal"); the production CLI itself adds nothing.
SETTINGS_FILLERS: list[Callable[[Settings], Settings]] = []


def with_running_stack(s: Settings) -> Settings:
    """The settings, completed by every registered filler (devtools.cli registers the running dev stack's)."""
    for fill in SETTINGS_FILLERS:
        s = fill(s)
    return s


def need_database(s: Settings) -> str:
    if not s.database_url:
        typer.echo("error: no database: set RETAILFLOW_DATABASE_URL, or start `retailflow dev` first", err=True)
        raise typer.Exit(2)
    return s.database_url


def run(value: Any) -> Any:
    """Await a coroutine from sync code (Typer commands are sync); pass anything else through."""
    return asyncio.run(value) if inspect.iscoroutine(value) else value


def echo_json(value: Any) -> None:
    from pydantic_core import to_jsonable_python

    typer.echo(json.dumps(to_jsonable_python(value), indent=2, default=str))


def logging_for(service: str, s: Settings) -> None:
    from config.logging import configure_logging

    configure_logging(s, service=service)


@main.command()
def worker() -> None:
    """Run a worker against the configured Temporal and PostgreSQL (until SIGTERM/SIGINT)."""
    from worker.main import run_worker

    s = settings()
    logging_for("worker", s)
    code = asyncio.run(run_worker(s))
    # Everything is stopped, drained and disposed by now. Leave without interpreter finalization: the SDK core's
    # native threads (forwarded logs, metrics) may still call into Python while it tears down, which aborts
    # with "PyGILState_Release ... finalizing" (SIGABRT) about once in a few dozen stops, turning a clean stop
    # into exit -6 for the supervisor.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


@main.command()
def api() -> None:
    """Run the HTTP service (webhooks and read API) on RETAILFLOW_HTTP_HOST:RETAILFLOW_HTTP_PORT."""
    from starters.api import serve
    s = settings()
    logging_for("api", s)
    raise typer.Exit(run(serve(s)) or 0)


# ---- data ----------------------------------------------------------------------------------------------------
@main.command()
def migrate() -> None:
    """Migrate the database to the newest schema (workers do it too; compose runs it once before them)."""
    from persistence.migrations import current, upgrade

    s = with_running_stack(settings())
    logging_for("migrate", s)
    url = need_database(s)
    asyncio.run(upgrade(url))
    typer.echo(f"database at revision {asyncio.run(current(url))}")


@main.command()
def check() -> None:
    """The invariant checker: prints its findings as JSON, exits 1 on any violation."""
    from activities.checker import cli

    url = need_database(with_running_stack(settings()))
    raise typer.Exit(asyncio.run(cli(url)))


async def _status(s: Settings, key: str) -> dict[str, Any]:
    from temporalio.client import WorkflowExecutionStatus
    from temporalio.service import RPCError

    from client.connect import connect

    client = await connect(s)
    workflow_ids = [key] if ":" in key else []
    if not workflow_ids:
        query = f'BusinessKey = "{key}"'
        workflow_ids = [w.id async for w in client.list_workflows(query, limit=20)]
    if not workflow_ids:
        return {"key": key, "found": False, "processes": []}
    processes = []
    for workflow_id in dict.fromkeys(workflow_ids):
        handle = client.get_workflow_handle(workflow_id)
        try:
            description = await handle.describe()
        except RPCError as err:
            processes.append({"workflow_id": workflow_id, "error": err.message})
            continue
        entry: dict[str, Any] = {
            "workflow_id": workflow_id, "workflow_type": description.workflow_type,
            "status": description.status.name if description.status else None,
            "started": description.start_time, "closed": description.close_time,
        }
        try:
            entry["state"] = await handle.query("state")
        except Exception as err:  # noqa: BLE001 - a workflow without the query, or no worker running
            entry["state_error"] = str(err)
        if description.status == WorkflowExecutionStatus.RUNNING:
            entry["running"] = True
        processes.append(entry)
    return {"key": key, "found": any("error" not in p for p in processes), "processes": processes}


@main.command()
def status(key: str = typer.Argument(..., help="A workflow ID (order:web:1042) or a business key (web/1042).")) -> None:
    """A process's stage, lines, shipments and exception cases, straight from the workflow."""
    result = asyncio.run(_status(with_running_stack(settings()), key))
    echo_json(result)
    if not result["found"]:
        raise typer.Exit(1)


@exceptions_app.command("list")
def exceptions_list(
    status: str = typer.Option("open", help="open, resolved or all."),
) -> None:
    """Exception cases with kind, severity, business key, deadline and escalations."""
    from starters.exception_cases import list_cases

    if status not in ("open", "resolved", "all"):
        typer.echo(f"error: --status is open, resolved or all, not {status!r}", err=True)
        raise typer.Exit(2)
    url = need_database(with_running_stack(settings()))

    async def go() -> Any:
        from persistence.engine import create_engine

        engine = create_engine(url, pool_size=1, max_overflow=0)
        try:
            return await list_cases(engine, None if status == "all" else status)
        finally:
            await engine.dispose()

    echo_json(asyncio.run(go()))


@exceptions_app.command("resolve")
def exceptions_resolve(
    exception_id: str = typer.Argument(..., help="The case's ID (exception:<process workflow ID>:<kind>)."),
    note: str = typer.Option(..., help="What was done."),
    resolved_by: str = typer.Option("ops", "--by", help="Who resolved it."),
) -> None:
    """Resolve an exception case by hand (through the case workflow, which checks it)."""
    from domain.cases import ResolveRequest
    from starters.exception_cases import CaseError, resolve_case

    async def go() -> Any:
        from client.connect import connect

        client = await connect(with_running_stack(settings()))
        return await resolve_case(client, exception_id, ResolveRequest(note=note, resolved_by=resolved_by))

    try:
        echo_json(asyncio.run(go()))
    except CaseError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from None


def _count_decision(verdict: str, count_id: str, note: str, decided_by: str | None) -> None:
    import getpass

    from domain.counts import DecisionRequest
    from starters.counts import CountError, decide

    by = decided_by or f"cli:{getpass.getuser()}"

    async def go() -> Any:
        from client.connect import connect

        client = await connect(with_running_stack(settings()))
        return await decide(client, count_id, verdict, DecisionRequest(note=note, decided_by=by))  # type: ignore[arg-type]

    if not note.strip():
        typer.echo("error: a note is required: say why", err=True)
        raise typer.Exit(1)
    try:
        echo_json(asyncio.run(go()))
    except CountError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from None


@counts_app.command("approve")
def counts_approve(
    count_id: str = typer.Argument(..., help="The count's ID (its workflow is count:<COUNT_ID>)."),
    note: str = typer.Option(..., help="Why the variance is accepted."),
    decided_by: str = typer.Option(None, "--by", help="Who decides (default cli:<your user name>)."),
) -> None:
    """Approve a count's variances beyond tolerance: the adjustment is posted (reason cycle_count)."""
    _count_decision("approve", count_id, note, decided_by)


@counts_app.command("reject")
def counts_reject(
    count_id: str = typer.Argument(..., help="The count's ID."),
    note: str = typer.Option(..., help="Why (e.g. recount ordered)."),
    decided_by: str = typer.Option(None, "--by", help="Who decides (default cli:<your user name>)."),
) -> None:
    """Reject a count's variances beyond tolerance: nothing is adjusted."""
    _count_decision("reject", count_id, note, decided_by)


if __name__ == "__main__":
    sys.exit(main())
