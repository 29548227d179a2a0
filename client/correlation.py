"""Correlation IDs: the webhook-id that caused a piece of work, carried in Temporal headers from the door into
workflow and activity logs. One class is the client and the worker interceptor (docs/door.md)."""
from collections.abc import Mapping
from typing import Any

import temporalio.api.common.v1
import temporalio.client
import temporalio.converter
import temporalio.worker
from temporalio import activity, workflow

from config.logging import bind, correlation_id

HEADER = "correlation-id"
_converter = temporalio.converter.default().payload_converter


def _with_header(headers: Mapping[str, temporalio.api.common.v1.Payload], value: str | None
                 ) -> Mapping[str, temporalio.api.common.v1.Payload]:
    if not value:
        return headers
    return {**headers, HEADER: _converter.to_payloads([value])[0]}


def _read(headers: Mapping[str, temporalio.api.common.v1.Payload]) -> str | None:
    payload = headers.get(HEADER)
    if payload is None:
        return None
    try:
        value = _converter.from_payloads([payload], [str])[0]
    except Exception:  # noqa: BLE001 - a foreign header never breaks a workflow
        return None
    return value if isinstance(value, str) else None


class _ClientOutbound(temporalio.client.OutboundInterceptor):
    async def start_workflow(self, input: temporalio.client.StartWorkflowInput) -> Any:
        input.headers = _with_header(input.headers, correlation_id.get())
        return await super().start_workflow(input)

    async def signal_workflow(self, input: temporalio.client.SignalWorkflowInput) -> None:
        input.headers = _with_header(input.headers, correlation_id.get())
        return await super().signal_workflow(input)

    async def start_workflow_update(self, input: temporalio.client.StartWorkflowUpdateInput) -> Any:
        input.headers = _with_header(input.headers, correlation_id.get())
        return await super().start_workflow_update(input)

    async def start_update_with_start_workflow(
        self, input: temporalio.client.StartWorkflowUpdateWithStartInput
    ) -> Any:
        value = correlation_id.get()
        input.start_workflow_input.headers = _with_header(input.start_workflow_input.headers, value)
        input.update_workflow_input.headers = _with_header(input.update_workflow_input.headers, value)
        return await super().start_update_with_start_workflow(input)


class _WorkflowInbound(temporalio.worker.WorkflowInboundInterceptor):
    def init(self, outbound: temporalio.worker.WorkflowOutboundInterceptor) -> None:
        self.latest: str | None = None
        super().init(_WorkflowOutbound(outbound, self))

    def _arrived(self, headers: Mapping[str, temporalio.api.common.v1.Payload], what: str) -> None:
        value = _read(headers)
        if value:
            self.latest = value
            if not workflow.unsafe.is_replaying():
                workflow.logger.info("%s correlation_id=%s", what, value,
                                     extra={"correlation_id": value})

    async def execute_workflow(self, input: temporalio.worker.ExecuteWorkflowInput) -> Any:
        self._arrived(input.headers, "started")
        return await super().execute_workflow(input)

    async def handle_signal(self, input: temporalio.worker.HandleSignalInput) -> None:
        self._arrived(input.headers, f"signal {input.signal}")
        return await super().handle_signal(input)

    async def handle_update_handler(self, input: temporalio.worker.HandleUpdateInput) -> Any:
        self._arrived(input.headers, f"update {input.update}")
        return await super().handle_update_handler(input)


class _WorkflowOutbound(temporalio.worker.WorkflowOutboundInterceptor):
    def __init__(self, next: temporalio.worker.WorkflowOutboundInterceptor, inbound: _WorkflowInbound) -> None:
        super().__init__(next)
        self._inbound = inbound

    def start_activity(self, input: temporalio.worker.StartActivityInput) -> Any:
        input.headers = _with_header(input.headers, self._inbound.latest)
        return super().start_activity(input)

    def start_local_activity(self, input: temporalio.worker.StartLocalActivityInput) -> Any:
        input.headers = _with_header(input.headers, self._inbound.latest)
        return super().start_local_activity(input)

    async def start_child_workflow(self, input: temporalio.worker.StartChildWorkflowInput) -> Any:
        input.headers = _with_header(input.headers, self._inbound.latest)
        return await super().start_child_workflow(input)

    async def signal_child_workflow(self, input: temporalio.worker.SignalChildWorkflowInput) -> None:
        input.headers = _with_header(input.headers, self._inbound.latest)
        return await super().signal_child_workflow(input)

    async def signal_external_workflow(self, input: temporalio.worker.SignalExternalWorkflowInput) -> None:
        input.headers = _with_header(input.headers, self._inbound.latest)
        return await super().signal_external_workflow(input)


class _ActivityInbound(temporalio.worker.ActivityInboundInterceptor):
    async def execute_activity(self, input: temporalio.worker.ExecuteActivityInput) -> Any:
        value = _read(input.headers)
        if not value:
            return await super().execute_activity(input)
        with bind(value):
            activity.logger.debug("activity correlation_id=%s", value, extra={"correlation_id": value})
            return await super().execute_activity(input)


class CorrelationInterceptor(temporalio.client.Interceptor, temporalio.worker.Interceptor):
    def intercept_client(self, next: temporalio.client.OutboundInterceptor) -> temporalio.client.OutboundInterceptor:
        return _ClientOutbound(next)

    def intercept_activity(self, next: temporalio.worker.ActivityInboundInterceptor
                           ) -> temporalio.worker.ActivityInboundInterceptor:
        return _ActivityInbound(next)

    def workflow_interceptor_class(self, input: temporalio.worker.WorkflowInterceptorClassInput
                                   ) -> type[temporalio.worker.WorkflowInboundInterceptor]:
        return _WorkflowInbound
