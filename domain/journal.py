"""Double-entry journal: the chart of accounts and what each recognition point posts.

One entry belongs to one legal entity and balances on its own (sum of debits = sum of credits); a movement
that crosses entities posts one entry per entity through the intercompany accounts. The invariant the
checker enforces: per entity, INVENTORY_ACCOUNTS equal units on hand times unit cost.
"""
from decimal import Decimal
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator

from domain.inventory import Bucket, MovementKind, MovementLine
from domain.money import Amount


class Account(StrEnum):
    INVENTORY = "inventory"
    INVENTORY_IN_TRANSIT = "inventory_in_transit"
    RETURNS_PENDING_INSPECTION = "returns_pending_inspection"
    COGS = "cogs"
    REVENUE = "revenue"
    RECEIVABLE = "receivable"
    CASH_CLEARING = "cash_clearing"
    REFUNDS_PAYABLE = "refunds_payable"
    SALES_RETURNS = "sales_returns"
    SHRINK = "shrink"
    INTERCOMPANY_RECEIVABLE = "intercompany_receivable"
    INTERCOMPANY_PAYABLE = "intercompany_payable"
    GOODS_RECEIVED = "goods_received_not_invoiced"
    VENDOR_RECEIVABLE = "vendor_receivable"
    SETTLEMENT_DIFFERENCES = "settlement_differences"  # settled gross vs captured, within the tolerance
    PROCESSOR_FEES = "processor_fees"  # what the payment processor kept out of a settlement
    PURCHASE_PRICE_VARIANCE = "purchase_price_variance"
    ACCOUNTS_PAYABLE = "accounts_payable"
    VENDOR_CREDIT_VARIANCE = "vendor_credit_variance"


# Where the value of units in each bucket sits.
BUCKET_ACCOUNT: dict[Bucket, Account] = {
    Bucket.AVAILABLE: Account.INVENTORY,
    Bucket.RESERVED: Account.INVENTORY,
    Bucket.PICKED: Account.INVENTORY,
    Bucket.DAMAGED: Account.INVENTORY,
    Bucket.VENDOR_RETURN: Account.INVENTORY,
    Bucket.IN_TRANSIT: Account.INVENTORY_IN_TRANSIT,
    Bucket.PENDING_INSPECTION: Account.RETURNS_PENDING_INSPECTION,
}
INVENTORY_ACCOUNTS = frozenset(BUCKET_ACCOUNT.values())
# Where inventory control's value goes when it is not inventory: accruals and variances the reconciliation reports
# per legal entity beside operational vs financial inventory.
INVENTORY_CONTROL_ACCOUNTS = (
    Account.GOODS_RECEIVED, Account.PURCHASE_PRICE_VARIANCE, Account.SHRINK, Account.VENDOR_RECEIVABLE,
    Account.VENDOR_CREDIT_VARIANCE, Account.ACCOUNTS_PAYABLE,
)


class JournalLine(BaseModel):
    model_config = ConfigDict(frozen=True)

    account: Account
    debit: Amount = Decimal(0)
    credit: Amount = Decimal(0)


class JournalEntry(BaseModel):
    model_config = ConfigDict(frozen=True)

    key: str
    legal_entity: str
    currency: str
    memo: str
    lines: list[JournalLine] = Field(min_length=2)

    @model_validator(mode="after")
    def _balanced(self) -> "JournalEntry":
        debits = sum((line.debit for line in self.lines), Decimal(0))
        credits = sum((line.credit for line in self.lines), Decimal(0))
        if debits != credits:
            raise ValueError(f"entry {self.key} is unbalanced: debits {debits} != credits {credits}")
        return self


def _pair(debit: Account, credit: Account, amount: Decimal) -> list[JournalLine]:
    return [JournalLine(account=debit, debit=amount), JournalLine(account=credit, credit=amount)]


# Counter-accounts for value entering or leaving inventory without a bucket on the other side.
_INFLOW = {MovementKind.RECEIPT: Account.GOODS_RECEIVED, MovementKind.RETURN_RECEIPT: Account.COGS}
_OUTFLOW = {
    MovementKind.SHIP: Account.COGS,
    MovementKind.WRITE_OFF: Account.SHRINK,
    MovementKind.VENDOR_RETURN: Account.VENDOR_RECEIVABLE,
}


def movement_postings(
    kind: MovementKind,
    line: MovementLine,
    unit_cost: Decimal,
    entity_of: dict[str, str],
) -> list[tuple[str, list[JournalLine]]]:
    """The journal lines, per legal entity, that one movement line posts at standard cost.

    Movements that keep value in the same account of the same entity (reserve, pick, ...) post nothing.
    """
    from domain.inventory import deltas  # local: keeps the module graph flat

    value = unit_cost * abs(line.quantity)
    moved = deltas(kind, line)
    if kind is MovementKind.ADJUST:
        account = BUCKET_ACCOUNT[moved[0].bucket]
        entity = entity_of[line.location_id]
        if line.quantity > 0:
            return [(entity, _pair(account, Account.SHRINK, value))]
        return [(entity, _pair(Account.SHRINK, account, value))]
    source = next((d for d in moved if d.delta < 0), None)
    target = next((d for d in moved if d.delta > 0), None)
    if kind is MovementKind.RETURN_RECEIPT and line.sale_location_id is not None and target is not None:
        # the entity that sold the units reverses their cost of goods; if they land in another entity's store,
        # it hands them over at cost, as a transfer between entities does
        seller, holder = entity_of[line.sale_location_id], entity_of[target.location_id]
        if seller != holder:
            return [
                (seller, _pair(Account.INTERCOMPANY_RECEIVABLE, Account.COGS, value)),
                (holder, _pair(BUCKET_ACCOUNT[target.bucket], Account.INTERCOMPANY_PAYABLE, value)),
            ]
    if source is None and target is not None:
        return [(entity_of[target.location_id], _pair(BUCKET_ACCOUNT[target.bucket], _INFLOW[kind], value))]
    if target is None and source is not None:
        return [(entity_of[source.location_id], _pair(_OUTFLOW[kind], BUCKET_ACCOUNT[source.bucket], value))]
    assert source is not None and target is not None
    src_entity, dst_entity = entity_of[source.location_id], entity_of[target.location_id]
    src_account, dst_account = BUCKET_ACCOUNT[source.bucket], BUCKET_ACCOUNT[target.bucket]
    if src_entity == dst_entity:
        if src_account == dst_account:
            return []
        return [(src_entity, _pair(dst_account, src_account, value))]
    return [
        (src_entity, _pair(Account.INTERCOMPANY_RECEIVABLE, src_account, value)),
        (dst_entity, _pair(dst_account, Account.INTERCOMPANY_PAYABLE, value)),
    ]


class FinancialEvent(StrEnum):
    """Postings that are about money rather than units."""

    SALE = "sale"  # revenue recognised at shipment: Dr receivable, Cr revenue
    SETTLEMENT = "settlement"  # payment settled: Dr cash clearing, Cr receivable
    SALES_RETURN = "sales_return"  # refund owed for accepted units: Dr sales returns, Cr refunds payable
    REFUND_PAID = "refund_paid"  # refund settled: Dr refunds payable, Cr cash clearing
    # A receipt carries inventory at standard cost against GRNI (the movement's own entry); the PO's cost differs
    # by the purchase price variance, which brings GRNI to what the supplier will invoice.
    PRICE_VARIANCE_UNFAVOURABLE = "price_variance_unfavourable"  # PO above standard: Dr PPV, Cr GRNI
    PRICE_VARIANCE_FAVOURABLE = "price_variance_favourable"  # PO below standard: Dr GRNI, Cr PPV
    VENDOR_CREDIT = "vendor_credit"  # credit note for returned units: Dr accounts payable, Cr vendor receivable
    VENDOR_CREDIT_SHORT = "vendor_credit_short"  # credited less: Dr vendor credit variance, Cr vendor receivable
    VENDOR_CREDIT_OVER = "vendor_credit_over"  # credited more: Dr accounts payable, Cr vendor credit variance


FINANCIAL_ACCOUNTS: dict[FinancialEvent, tuple[Account, Account]] = {
    FinancialEvent.SALE: (Account.RECEIVABLE, Account.REVENUE),
    FinancialEvent.SETTLEMENT: (Account.CASH_CLEARING, Account.RECEIVABLE),
    FinancialEvent.SALES_RETURN: (Account.SALES_RETURNS, Account.REFUNDS_PAYABLE),
    FinancialEvent.REFUND_PAID: (Account.REFUNDS_PAYABLE, Account.CASH_CLEARING),
    FinancialEvent.PRICE_VARIANCE_UNFAVOURABLE: (Account.PURCHASE_PRICE_VARIANCE, Account.GOODS_RECEIVED),
    FinancialEvent.PRICE_VARIANCE_FAVOURABLE: (Account.GOODS_RECEIVED, Account.PURCHASE_PRICE_VARIANCE),
    FinancialEvent.VENDOR_CREDIT: (Account.ACCOUNTS_PAYABLE, Account.VENDOR_RECEIVABLE),
    FinancialEvent.VENDOR_CREDIT_SHORT: (Account.VENDOR_CREDIT_VARIANCE, Account.VENDOR_RECEIVABLE),
    FinancialEvent.VENDOR_CREDIT_OVER: (Account.ACCOUNTS_PAYABLE, Account.VENDOR_CREDIT_VARIANCE),
}


def financial_lines(event: FinancialEvent, amount: Decimal, *, fee: Decimal = Decimal(0),
                    difference: Decimal = Decimal(0)) -> list[JournalLine]:
    """The lines of a money-only entry of `amount`.

    A settlement may carry a processor `fee` and a `difference` (gross settled - receivable cleared, within the
    tolerance): the receivable is credited `amount` exactly, the fee goes to processor_fees, the difference to
    settlement_differences (credit when more came than captured, debit when less), and cash clearing gets the
    rest (what actually arrived), so nothing is left on the receivable.
    """
    debit, credit = FINANCIAL_ACCOUNTS[event]
    if not fee and not difference:
        return _pair(debit, credit, amount)
    if event is not FinancialEvent.SETTLEMENT:
        raise ValueError(f"only a settlement carries a fee or a difference, not {event}")
    cash = amount + difference - fee
    if cash < 0 or fee < 0:
        raise ValueError(f"settlement of {amount}: fee {fee} and difference {difference} leave {cash} in cash")
    lines = [JournalLine(account=Account.CASH_CLEARING, debit=cash)] if cash else []
    if fee:
        lines.append(JournalLine(account=Account.PROCESSOR_FEES, debit=fee))
    if difference > 0:
        lines.append(JournalLine(account=Account.SETTLEMENT_DIFFERENCES, credit=difference))
    elif difference < 0:
        lines.append(JournalLine(account=Account.SETTLEMENT_DIFFERENCES, debit=-difference))
    lines.append(JournalLine(account=Account.RECEIVABLE, credit=amount))
    return lines
