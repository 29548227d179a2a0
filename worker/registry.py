"""What a retailflow worker runs: every workflow type and every activity, in one list each.

The worker, the tests and the replayer all take their workflow list from here, so a history is always
replayed against exactly the code a worker would run.
"""
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from workflows.count_to_adjust import CountToAdjust
from workflows.exception_case import ExceptionCase
from workflows.late_event import LateEvent
from workflows.receive_to_stock import ReceiveToStock
from workflows.reconciliation import Reconciliation
from workflows.reserve_to_fulfill import ReserveToFulfill
from workflows.return_to_refund import ReturnToRefund
from workflows.ship_to_settle import ShipToSettle
from workflows.transfer import Transfer
from workflows.vendor_return import VendorReturn

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine
    from temporalio.client import Client

    from worker.settings import Settings

WORKFLOWS: list[type] = [ReserveToFulfill, ShipToSettle, Transfer, ReturnToRefund, ExceptionCase, Reconciliation,
                         LateEvent]
WORKFLOWS += [ReceiveToStock, CountToAdjust, VendorReturn]  # inventory control (issue 21)


def activities(client: "Client", engine: "AsyncEngine", settings: "Settings",
               *, fault_seed: int | None = None) -> list[Callable[..., Any]]:
    """Every activity: the stub ERP / WMS / POS adapters, the case register, and event forwarding."""
    from activities import activity_methods, stub_activities
    from activities.cases import CaseActivities
    from activities.reconciliation import ReconciliationActivities
    from activities.registry import RegistryActivities
    from activities.routing import RoutingActivities

    return [
        *stub_activities(engine, settings, fault_seed=fault_seed),
        *activity_methods(CaseActivities(engine), RoutingActivities(client, settings, engine),
                           ReconciliationActivities(client, engine,
                                                    quiet_for=settings.reconciliation_orphan_quiet_for),
                           RegistryActivities(engine, client)),
    ]
