"""The one way to build a retailflow worker: used by `retailflow worker`, the dev stack, the tests and the bench.

Workflows run in the SDK sandbox; our pure modules (domain models, shared workflow pieces, activity input
models) are passed through so they are imported once, not per workflow run.
"""
import pkgutil
from functools import cache
from typing import TYPE_CHECKING

from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

import workflows
from client.correlation import CorrelationInterceptor
from worker.registry import WORKFLOWS, activities

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine
    from temporalio.client import Client

    from config.settings import Settings

PASSTHROUGH = ("domain", "pydantic", "pydantic_core", "annotated_types", "activities", "adapters", "client", "structlog",
               "opentelemetry")  # opentelemetry: one context (the trace) inside and outside the sandbox

# The workflows' shared machinery, by module name in `workflows` and in every release package under it
# (workflows.process, workflows.release_2.process, ...). A package prefix would not do: a release package also
# holds the workflow classes, which the sandbox must import afresh for every run (their module globals are the
# run's own, and the sandbox's guards on time, randomness and I/O apply to them). Passed through, a helper is
# one module object shared by every run of the worker, so it must keep no mutable module-level state and define
# no workflow (tests/test_passthrough.py fails on either, and warns on a workflows module of neither kind that
# is not listed). `exception_case` is not a helper: it defines the ExceptionCase workflow.
WORKFLOW_HELPERS = frozenset({"calls", "common", "process", "sla"})


@cache
def workflow_helper_modules() -> tuple[str, ...]:
    """Every workflows module (at any depth) whose own name is one of WORKFLOW_HELPERS."""
    return tuple(sorted(m.name for m in pkgutil.walk_packages(workflows.__path__, "workflows.")
                        if not m.ispkg and m.name.rsplit(".", 1)[-1] in WORKFLOW_HELPERS))


def passthrough_modules() -> tuple[str, ...]:
    return PASSTHROUGH + workflow_helper_modules()


def workflow_runner() -> SandboxedWorkflowRunner:
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(*passthrough_modules()))


def build_worker(client: "Client", engine: "AsyncEngine", settings: "Settings", *, task_queue: str | None = None,
                 fault_seed: int | None = None, **overrides: object) -> Worker:
    """A worker on `settings.task_queue` (or `task_queue`) running every workflow and activity."""
    options: dict[str, object] = dict(
        task_queue=task_queue or settings.task_queue,
        workflows=WORKFLOWS,
        activities=activities(client, engine, settings, fault_seed=fault_seed),
        workflow_runner=workflow_runner(),
        max_concurrent_activities=settings.max_concurrent_activities,
        max_concurrent_workflow_tasks=settings.max_concurrent_workflow_tasks,
        max_cached_workflows=settings.max_cached_workflows,
        max_concurrent_workflow_task_polls=settings.workflow_task_pollers,
        max_concurrent_activity_task_polls=settings.activity_task_pollers,
    )
    # a client from client.connect.connect() carries the correlation interceptor (the worker inherits it);
    # any other client (the test environments') gets it on the worker
    if not any(isinstance(i, CorrelationInterceptor) for i in client.config().get("interceptors", [])):
        options["interceptors"] = [CorrelationInterceptor()]
    options.update(overrides)
    return Worker(client, **options)  # type: ignore[arg-type]
