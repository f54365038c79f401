"""Coding resolution: item + party rule + connection settings + imported lists -> PublishPlan.

A pure function (no I/O), so the preview shows exactly what publishing will send, and property
tests can exercise it. Every value records where it came from, by this precedence:
manual edit > party rule > captured > connection default > the ledger's own default > missing.
Problems that would make the ledger refuse the document are found here, before any call.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from ledgerlink.models.common import ItemType, ListType
from ledgerlink.models.connection import PublishingSettings
from ledgerlink.models.items import CapturedItem, Line
from ledgerlink.models.lists import ListRecord, RecordStatus, normalise_name
from ledgerlink.models.publishing import PlannedLine, PlanProblem, PublishPlan, Resolved, ValueSource
from ledgerlink.models.rules import PartyRule
from ledgerlink.providers.config import Capabilities


def idempotency_key(business_id: str, item_id: str, revision: int) -> str:
    """32 hex characters: fits every ledger's key format (Sage wants exactly 32 hex, QuickBooks <= 36)."""
    return hashlib.sha256(f"{business_id}\x1f{item_id}\x1f{revision}".encode()).hexdigest()[:32]


@dataclass
class ListIndex:
    """The imported lists of one connection, indexed the ways coding needs."""

    by_id: dict[str, ListRecord] = field(default_factory=dict)
    # normalised name -> the contacts of that name (a ledger may keep a supplier and a customer apart)
    contacts_by_name: dict[str, list[ListRecord]] = field(default_factory=dict)
    categories_by_code: dict[str, ListRecord] = field(default_factory=dict)
    tax_rates_by_code: dict[str, ListRecord] = field(default_factory=dict)

    @classmethod
    def build(cls, records: Iterable[ListRecord]) -> ListIndex:
        index = cls()
        for record in records:
            index.by_id[record.id] = record
            if record.list_type == ListType.CONTACTS:
                index.contacts_by_name.setdefault(normalise_name(record.name), []).append(record)
            elif record.list_type == ListType.CATEGORIES and record.code:
                index.categories_by_code[record.code] = record
            elif record.list_type == ListType.TAX_RATES and record.code:
                index.tax_rates_by_code[record.code] = record
        return index

    def contact_named(self, name: str, *, customer: bool | None) -> ListRecord | None:
        """The contact called ``name``: one in the right role first (a supplier for costs, a
        customer for sales), an active one before an archived one."""
        candidates = self.contacts_by_name.get(normalise_name(name), [])

        def preference(record: ListRecord) -> tuple[bool, bool]:
            in_role = customer is None or bool(record.is_customer if customer else record.is_supplier)
            return (not in_role, record.status == RecordStatus.ARCHIVED)

        return min(candidates, key=preference, default=None)


class _Planner:
    def __init__(
        self,
        item: CapturedItem,
        rule: PartyRule | None,
        settings: PublishingSettings,
        lists: ListIndex,
        capabilities: Capabilities,
    ):
        self.item = item
        self.rule = rule
        self.settings = settings
        self.lists = lists
        self.capabilities = capabilities
        self.edited = set(item.edited_fields)
        self.problems: list[PlanProblem] = []

    def problem(self, code: str, message: str, hint: str, field_name: str | None = None) -> None:
        self.problems.append(PlanProblem(code=code, message=message, hint=hint, field=field_name))

    def resolved(self, record: ListRecord, source: ValueSource) -> Resolved:
        return Resolved(
            record_id=record.id,
            remote_id=record.remote_id,
            code=record.code,
            name=record.name,
            dimension_remote_id=record.dimension_remote_id,
            source=source,
        )

    def pick(
        self, name: str, captured: str | None, list_type: ListType, field_path: str
    ) -> tuple[ListRecord, ValueSource] | None:
        """The record chosen for ``name`` by a manual edit, the party rule, or the capture."""
        rule_value = getattr(self.rule, name, None) if self.rule else None
        candidates: list[tuple[str | None, ValueSource]] = []
        if name in self.edited:
            candidates.append((captured, ValueSource.MANUAL))
        candidates += [(rule_value, ValueSource.SUPPLIER_RULE), (captured, ValueSource.CAPTURED)]
        for record_id_value, source in candidates:
            if record_id_value is None:
                continue
            record = self.lists.by_id.get(record_id_value)
            if record is None or record.list_type != list_type:
                self.problem(
                    "unknown_reference",
                    f"{field_path} refers to {record_id_value}, which is not in the imported {list_type} list",
                    "Refresh the lists or choose another value.",
                    field_path,
                )
                return None
            return record, source
        return None

    def contact(self) -> Resolved:
        party = self.item.party
        if self.item.type == ItemType.EXPENSE_CLAIM and self.item.claimant is not None:
            name = self.item.claimant.name
            found = self.lists.contact_named(name, customer=False)
            if found is not None:
                return self.resolved(found, ValueSource.LEDGER_DEFAULT)
            return Resolved(name=name, source=ValueSource.CAPTURED)
        assert party is not None  # CapturedItem guarantees a party for cost and sales items
        role = "customer" if self.item.type == ItemType.SALES else "supplier"
        linked = self.pick("contact", party.id, ListType.CONTACTS, role) if (party.id or self.rule) else None
        if linked is not None:
            record, source = linked
            if role in self.edited:
                source = ValueSource.MANUAL
        else:
            named = self.lists.contact_named(party.name, customer=role == "customer")
            source = ValueSource.LEDGER_DEFAULT
            if named is None:
                # Unknown to the ledger: it will be created (once) under the captured name.
                return Resolved(name=party.name, remote_id=party.remote_id, source=ValueSource.CAPTURED)
            record = named
        if record.status == RecordStatus.ARCHIVED:
            self.problem(
                "archived_contact",
                f"The {role} {record.name} is archived in the ledger",
                f"Restore the {role} in the ledger or pick another one, then publish again.",
                role,
            )
        return self.resolved(record, source)

    def category(self, line: Line, index: int, contact: Resolved) -> Resolved:
        path = f"lines[{index}].category"
        picked = self.pick("category", line.category, ListType.CATEGORIES, path)
        record: ListRecord | None = None
        source = ValueSource.MISSING
        if picked is not None:
            record, source = picked
        else:
            contact_record = self.lists.by_id.get(contact.record_id or "")
            default_code = contact_record.default_category_code if contact_record else None
            product = self.lists.by_id.get(line.product or "")
            if product is not None:
                default_code = (
                    product.sales_category_code
                    if self.item.type == ItemType.SALES
                    else product.purchase_category_code
                ) or default_code
            if default_code and default_code in self.lists.categories_by_code:
                record, source = self.lists.categories_by_code[default_code], ValueSource.LEDGER_DEFAULT
        return self.checked(
            record,
            source,
            path,
            kind="category",
            line_number=index + 1,
            allowed=record.usable_for if record else [],
            strict=True,  # a balance-sheet account (usable for nothing) never codes an item
            missing_hint="Choose a category for the line, or add a supplier rule with a default category.",
            wrong_kind_hint="Choose a category of the right kind (e.g. an expense account for a cost).",
        )

    def tax_rate(self, line: Line, index: int, category: Resolved, contact: Resolved) -> Resolved:
        path = f"lines[{index}].tax_rate"
        picked = self.pick("tax_rate", line.tax_rate, ListType.TAX_RATES, path)
        record: ListRecord | None = None
        source = ValueSource.MISSING
        if picked is not None:
            record, source = picked
        elif self.settings.default_tax_rate and self.settings.default_tax_rate in self.lists.by_id:
            record, source = self.lists.by_id[self.settings.default_tax_rate], ValueSource.CONNECTION_DEFAULT
        else:
            for owner in (contact, category):
                owner_record = self.lists.by_id.get(owner.record_id or "")
                code = owner_record.default_tax_code if owner_record else None
                if code and code in self.lists.tax_rates_by_code:
                    record, source = self.lists.tax_rates_by_code[code], ValueSource.LEDGER_DEFAULT
                    break
        return self.checked(
            record,
            source,
            path,
            kind="tax_rate",
            line_number=index + 1,
            allowed=record.applies_to if record else [],
            missing_hint="Choose a tax rate, or set a default tax rate in the connection's settings.",
            wrong_kind_hint="Choose a purchase tax rate for costs and a sales tax rate for sales.",
        )

    def checked(
        self,
        record: ListRecord | None,
        source: ValueSource,
        path: str,
        *,
        kind: str,
        line_number: int,
        allowed: list[ItemType],
        missing_hint: str,
        strict: bool = False,
        wrong_kind_hint: str,
    ) -> Resolved:
        """A line's category or tax rate, with the problems that would make the ledger refuse it."""
        label = kind.replace("_", " ")
        if record is None:
            if not any(p.field == path for p in self.problems):  # an unknown reference is reported already
                self.problem(f"missing_{kind}", f"Line {line_number} has no {label}", missing_hint, path)
            return Resolved(source=ValueSource.MISSING)
        item_kind = self.item.type.value.replace("_", " ")
        if record.status == RecordStatus.ARCHIVED:
            self.problem(
                f"archived_{kind}",
                f"The {label} {record.name} is archived in the ledger",
                f"Choose an active {label}.",
                path,
            )
        elif (allowed or strict) and self.item.type not in allowed:
            self.problem(
                f"{kind}_not_allowed",
                f"The {label} {record.name} cannot be used on a {item_kind} item",
                wrong_kind_hint,
                path,
            )
        return self.resolved(record, source)

    def optional(self, name: str, captured: str | None, list_type: ListType, path: str) -> Resolved | None:
        picked = self.pick(name, captured, list_type, path)
        if picked is None:
            return None
        record, source = picked
        if not record.codes_lines:
            self.problem(
                "project_not_on_lines",
                f"{record.name} is from {record.dimension_name}, which no document line can carry",
                "Use a tracking option from the projects list instead.",
                path,
            )
        elif record.status == RecordStatus.ARCHIVED:
            self.problem(
                f"archived_{name}", f"{record.name} is archived in the ledger", "Choose an active one.", path
            )
        return self.resolved(record, source)

    def destination(self) -> str:
        item_type = self.item.type
        choices = self.capabilities.destinations.get(item_type, ())
        for value in (
            self.item.destination,
            self.rule.destination if self.rule else None,
            self.settings.destinations.get(item_type),
            self.capabilities.default_destinations.get(item_type),
        ):
            if value is None:
                continue
            if value not in choices:
                self.problem(
                    "unsupported_destination",
                    f"{self.capabilities.display_name} has no destination {value!r} for {item_type.value} items",
                    f"Choose one of: {', '.join(choices)}.",
                    "destination",
                )
            return value
        self.problem(
            "no_destination",
            f"{self.capabilities.display_name} cannot take {item_type.value} items",
            "Publish this item somewhere else.",
            "type",
        )
        return ""

    def bank_account(self) -> Resolved | None:
        if self.item.paid is None:
            return None
        resolved = self.optional(
            "bank_account", self.item.paid.bank_account, ListType.BANK_ACCOUNTS, "paid.bank_account"
        )
        if resolved is None and self.settings.bank_match and self.capabilities.bank_match:
            self.problem(
                "missing_bank_account",
                "This item is paid but no bank account is set for its payment method",
                "Choose the bank account it was paid from, or turn Bank match off.",
                "paid.bank_account",
            )
        return resolved


def build_publish_plan(
    *,
    business_id: str,
    item: CapturedItem,
    revision: int,
    rule: PartyRule | None,
    settings: PublishingSettings,
    lists: ListIndex,
    capabilities: Capabilities,
) -> PublishPlan:
    planner = _Planner(item, rule, settings, lists, capabilities)
    destination = planner.destination()
    contact = planner.contact()
    lines = []
    for index, line in enumerate(item.lines):
        category = planner.category(line, index, contact)
        lines.append(
            PlannedLine(
                description=line.description,
                quantity=float(line.quantity),
                amount=line.amount,
                tax_amount=line.tax_amount,
                category=category,
                tax_rate=planner.tax_rate(line, index, category, contact),
                project=planner.optional(
                    "project", line.project, ListType.PROJECTS, f"lines[{index}].project"
                ),
                project_2=planner.optional(
                    "project_2", line.project_2, ListType.PROJECTS, f"lines[{index}].project_2"
                ),
                product=planner.optional("product", line.product, ListType.ITEMS, f"lines[{index}].product"),
            )
        )
    return PublishPlan(
        item_id=item.id,
        revision=revision,
        provider=capabilities.provider,
        item_type=item.type,
        destination=destination,
        contact=contact,
        date=item.date,
        due_date=item.due_date,
        reference=item.reference,
        currency=item.currency,
        net=item.totals.net,
        tax=item.totals.tax,
        gross=item.totals.gross,
        lines=lines,
        bank_account=planner.bank_account(),
        paid_on=item.paid.date if item.paid else None,
        payment_method=item.paid.payment_method if item.paid else None,
        bank_match=bool(item.paid and settings.bank_match and capabilities.bank_match),
        document=item.document,
        idempotency_key=idempotency_key(business_id, item.id, revision),
        problems=planner.problems,
    )
