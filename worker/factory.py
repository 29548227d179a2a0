"""The one way to build a retailflow worker: used by `retailflow worker`, the dev stack, the tests and the bench.

Workflows run in the SDK sandbox; our pure modules (domain models, shared workflow pieces, activity input
models) are passed through so they are imported once, not per workflow run.
"""
from typing import TYPE_CHECKING

from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from client.correlation import CorrelationInterceptor
from worker.registry import WORKFLOWS, activities

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine
    from temporalio.client import Client

    from config.settings import Settings

PASSTHROUGH = ("domain", "pydantic", "pydantic_core", "annotated_types", "activities", "adapters", "client", "structlog",
               "opentelemetry")  # opentelemetry: one context (the trace) inside and outside the sandbox


def workflow_runner() -> SandboxedWorkflowRunner:
    return SandboxedWorkflowRunner(restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH))


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
