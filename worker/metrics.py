"""Business counters beside the SDK runtime's own metrics, on the same Prometheus endpoint.

A workflow interceptor counts every process started and completed (by workflow type and outcome) and every
exception case opened (by kind), so no workflow carries metrics code. The counters go through
`workflow.metric_meter()`, which the SDK silences during replay: a run replayed after a worker restart is not
counted twice.
"""
from typing import Any

from temporalio import workflow
from temporalio.worker import (
    ExecuteWorkflowInput,
    Interceptor,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
)
from temporalio.workflow import ContinueAsNewError

PROCESSES_STARTED = "retailflow_processes_started"
PROCESSES_COMPLETED = "retailflow_processes_completed"
CASES_OPENED = "retailflow_exception_cases_opened"


def outcome_of(result: Any) -> str:
    """A process's result names its outcome (`outcome`, else its final `stage`); anything else is `completed`."""
    if isinstance(result, str):
        return result
    for name in ("outcome", "stage"):
        value = result.get(name) if isinstance(result, dict) else getattr(result, name, None)
        if value is not None:
            return str(value)
    return "completed"


class _CountingInbound(WorkflowInboundInterceptor):
    async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
        meter = workflow.metric_meter()
        info = workflow.info()
        labels = {"workflow_type": info.workflow_type}
        if info.continued_run_id is None:  # a continued run is the same process
            meter.create_counter(PROCESSES_STARTED, "processes started").add(1, labels)
            if info.workflow_type == "ExceptionCase" and input.args:
                kind = getattr(input.args[0], "kind", None)
                meter.create_counter(CASES_OPENED, "exception cases opened").add(1, {"kind": str(kind)})
        completed = meter.create_counter(PROCESSES_COMPLETED, "processes completed")
        try:
            result = await super().execute_workflow(input)
        except (ContinueAsNewError, GeneratorExit):  # GeneratorExit: evicted from the cache, or the worker stops
            raise
        except BaseException:
            completed.add(1, {**labels, "outcome": "failed"})
            raise
        completed.add(1, {**labels, "outcome": outcome_of(result)})
        return result


class BusinessMetrics(Interceptor):
    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor] | None:
        return _CountingInbound
