"""Workflow IDs are business keys: a second start of the same key never makes a second process."""


def order_workflow_id(channel: str, order_id: str) -> str:
    return f"order:{channel}:{order_id}"


def settle_workflow_id(channel: str, order_id: str) -> str:
    return f"settle:{channel}:{order_id}"


def transfer_workflow_id(transfer_id: str) -> str:
    return f"transfer:{transfer_id}"


def return_workflow_id(return_id: str) -> str:
    return f"return:{return_id}"


def po_workflow_id(po_id: str) -> str:
    return f"po:{po_id}"


def count_workflow_id(count_id: str) -> str:
    return f"count:{count_id}"


def rtv_workflow_id(rtv_id: str) -> str:
    return f"rtv:{rtv_id}"


def exception_workflow_id(process_workflow_id: str, kind: str) -> str:
    return f"exception:{process_workflow_id}:{kind}"


def order_business_key(channel: str, order_id: str) -> str:
    """The key ops search by (`BusinessKey`): one order and its settlement share it."""
    return f"{channel}/{order_id}"


# Event identity. A webhook's event is known by its source and its webhook-id (two sources may use the same
# id); events one process hands another live under `internal:`, a namespace no webhook can reach, because a
# webhook's identity always starts with `webhook:`.
def webhook_event_id(source: str, webhook_id: str) -> str:
    return f"webhook:{source}:{webhook_id}"


def internal_event_id(workflow_id: str, step: str) -> str:
    return f"internal:{workflow_id}:{step}"


def late_event_workflow_id(event_id: str) -> str:
    """The LateEvent process of one event that came after its process had ended (one per event identity)."""
    return f"late:{event_id}"
