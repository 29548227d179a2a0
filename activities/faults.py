"""Simulated trouble in the stub adapters (RETAILFLOW_FAULTS): a failure rate and added latency per operation,
raised as a retryable InjectedFault before anything is written (docs/runtime.md)."""
import asyncio
import random
from collections.abc import Awaitable, Callable, Mapping

from temporalio.exceptions import ApplicationError

from config.settings import FaultSpec, Settings
from domain.errors import ErrorType


class Faults:
    """Decides, per call, whether an operation is slowed down and whether it fails."""

    def __init__(
        self,
        specs: Mapping[str, FaultSpec] | None = None,
        *,
        seed: int | None = None,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self.specs = dict(specs or {})
        self.random = random.Random(seed)  # seedable, so a fault test is repeatable
        self.sleep = sleep
        self.injected: dict[str, int] = {}

    @classmethod
    def from_settings(cls, settings: Settings, *, seed: int | None = None) -> "Faults":
        return cls(settings.faults, seed=seed)

    def spec_for(self, operation: str) -> FaultSpec | None:
        adapter = operation.split(".", 1)[0]
        for candidate in (operation, f"{adapter}.*", "*"):
            if candidate in self.specs:
                return self.specs[candidate]
        return None

    async def inject(self, operation: str) -> None:
        """Sleep the configured latency, then fail with the configured probability."""
        spec = self.spec_for(operation)
        if spec is None:
            return
        if spec.latency_ms:
            ms = self.random.uniform(0, spec.latency_ms) if spec.random_latency else spec.latency_ms
            await self.sleep(ms / 1000)
        if spec.failure_rate and self.random.random() < spec.failure_rate:
            self.injected[operation] = self.injected.get(operation, 0) + 1
            raise ApplicationError(
                f"injected fault in {operation} (failure rate {spec.failure_rate})",
                type=ErrorType.INJECTED_FAULT,
                non_retryable=False,
            )


NO_FAULTS = Faults()
