"""What a retailflow worker runs: every workflow type and every activity, in one list each.

The worker, the tests and the replayer all take their workflow list from here, so a history is always
replayed against exactly the code a worker would run.
"""
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from activities.cases import CaseActivities
from activities.erp import ErpActivities
from activities.faults import Faults
from activities.pos import PosActivities
from activities.reconciliation import ReconciliationActivities
from activities.registry import RegistryActivities
from activities.routing import RoutingActivities
from activities.wms import WmsActivities
from adapters.stub_erp import PostgresErp
from adapters.stub_pos import PostgresPos
from adapters.stub_wms import PostgresWms
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

    from config.settings import Settings

WORKFLOWS: list[type] = [ReserveToFulfill, ShipToSettle, Transfer, ReturnToRefund, ExceptionCase, Reconciliation,
                         LateEvent]
WORKFLOWS += [ReceiveToStock, CountToAdjust, VendorReturn]  # inventory control (issue 21)


def activity_methods(*instances: object) -> list[Callable[..., Any]]:
    """Every @activity.defn method of the given activity class instances."""
    out = []
    for instance in instances:
        for name in dir(type(instance)):
            attr = getattr(type(instance), name)
            if callable(attr) and hasattr(attr, "__temporal_activity_definition"):
                out.append(getattr(instance, name))
    return out


def activities(client: "Client", engine: "AsyncEngine", settings: "Settings",
               *, fault_seed: int | None = None) -> list[Callable[..., Any]]:
    """Every activity: ERP, WMS and POS over the PostgreSQL stubs (with the configured faults and safety stock),
    the case register, the process registry, reconciliation and event forwarding. A team with real systems
    passes its own port implementations to the same activity classes."""
    faults = Faults.from_settings(settings, seed=fault_seed)
    return activity_methods(
        ErpActivities(PostgresErp(engine), faults, settings.safety_stock, master_data_ttl=settings.master_data_ttl),
        WmsActivities(PostgresWms(engine), faults),
        PosActivities(PostgresPos(engine), faults),
        CaseActivities(engine),
        RoutingActivities(client, settings, engine),
        ReconciliationActivities(client, engine, quiet_for=settings.reconciliation_orphan_quiet_for),
        RegistryActivities(engine, client),
    )
