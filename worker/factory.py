"""The one way to build a retailflow worker: used by `retailflow worker`, the dev stack, the tests and the bench.

Workflows run in the SDK sandbox; our pure modules (domain models, shared workflow pieces, activity input
models) are passed through so they are imported once, not per workflow run.
"""
import importlib
import pkgutil
from functools import cache
from typing import TYPE_CHECKING

from temporalio.worker import PollerBehaviorAutoscaling, PollerBehaviorSimpleMaximum, Worker
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

# The workflows' shared machinery (Inbox, ProcessView, SLA clocks, calls, the release patches) and the frozen
# implementations of earlier releases (workflows/release_N/: plain classes the workflow classes delegate to), passed
# through so a worker imports them once rather than once per workflow run. Never a module that defines a workflow
# class: the sandbox imports those afresh for every run (their globals are the run's own, and the sandbox's guards
# on time, randomness and I/O apply to them). Passed through, a module is one object shared by every run of the
# worker, so it must keep no mutable module-level state; tests/test_passthrough.py fails on either, and warns on a
# top-level workflows module that defines no workflow and is not listed here. `exception_case` and
# `reconciliation` define workflows.
WORKFLOW_HELPERS = ("workflows.calls", "workflows.common", "workflows.inventory_control", "workflows.parts",
                    "workflows.process", "workflows.reserve",
                    "workflows.sla")


@cache
def frozen_releases() -> tuple[str, ...]:
    """Every package under workflows (workflows.release_2, and the next one when a release is frozen)."""
    return tuple(sorted(f"workflows.{m.name}" for m in pkgutil.iter_modules(workflows.__path__) if m.ispkg))


def passthrough_modules() -> tuple[str, ...]:
    return PASSTHROUGH + WORKFLOW_HELPERS + frozen_releases()


def passed_through_workflow_modules() -> tuple[str, ...]:
    """The workflows modules the sandbox takes from the worker: the helpers and every module of a frozen release."""
    frozen = [m.name for release in frozen_releases()
              for m in pkgutil.walk_packages(importlib.import_module(release).__path__, release + ".") if not m.ispkg]
    return WORKFLOW_HELPERS + tuple(sorted(frozen))


def workflow_runner() -> SandboxedWorkflowRunner:
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(*passthrough_modules()))


def poller_options(settings: "Settings") -> dict[str, object]:
    """How a worker polls its task queue: the same for every worker built here and for the bench's skeleton."""
    def behavior(most: int) -> PollerBehaviorAutoscaling | PollerBehaviorSimpleMaximum:
        if settings.poller_behavior == "autoscaling":
            return PollerBehaviorAutoscaling(minimum=1, maximum=max(most, 2), initial=min(most, 5))
        return PollerBehaviorSimpleMaximum(maximum=most)

    return dict(workflow_task_poller_behavior=behavior(settings.workflow_task_pollers),
                activity_task_poller_behavior=behavior(settings.activity_task_pollers),
                nonsticky_to_sticky_poll_ratio=settings.nonsticky_to_sticky_poll_ratio)


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
        **poller_options(settings),
    )
    # a client from client.connect.connect() carries the correlation interceptor (the worker inherits it);
    # any other client (the test environments') gets it on the worker
    if not any(isinstance(i, CorrelationInterceptor) for i in client.config().get("interceptors", [])):
        options["interceptors"] = [CorrelationInterceptor()]
    options.update(overrides)
    return Worker(client, **options)  # type: ignore[arg-type]
