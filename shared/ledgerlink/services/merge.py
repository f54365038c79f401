"""Merge Lists: after Change connection, or a Disconnect that kept the lists followed by a new
connection (to the same ledger or another), map what rules and unpublished items refer to in the
old lists onto the newly imported ones, so coding keeps working.

* ``preview`` proposes, for every old entry that a rule or an unpublished item refers to, the new
  entry it most likely is (``services/matching.py``), with the reason, and stores the proposal with
  the freshness of the lists it was computed against.
* ``apply`` rewrites the rules and items atomically (``storage/merge.py``: one DynamoDB transaction
  when everything fits, otherwise stage, flip one pointer, roll forward), keeps an undo record,
  clears ``merge_pending`` in the same commit, and emits ``lists.merged``. Applying twice answers
  with the first result.
* ``undo`` (within seven days) puts back what the merge rewrote, unless it changed since.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pydantic import BaseModel

from ledgerlink.api.auth import Caller, require_admin
from ledgerlink.clock import Clock
from ledgerlink.errors import Conflict, InvalidState, ResourceNotFound, Unprocessable
from ledgerlink.models.common import ItemType, ListType
from ledgerlink.models.connection import Connection, ConnectionStatus
from ledgerlink.models.items import CapturedItem, ItemStatus, Line, Party, StoredItem
from ledgerlink.models.lists import ListRecord, RecordStatus, list_type_of, record_id
from ledgerlink.models.merge import (
    MERGED_LISTS,
    ApplyMergeRequest,
    ListOutcome,
    ListProposal,
    ListTotals,
    MatchReason,
    MergeProposal,
    MergeRecord,
    MergeResult,
    MergeState,
    ProposedEntry,
    UndoMergeRequest,
    UndoResult,
    name_only_rule_id,
)
from ledgerlink.models.rules import RULE_REFERENCES, PartyRule, RuleKind, StoredRule
from ledgerlink.observability import logger
from ledgerlink.providers import registry
from ledgerlink.services.events import EventPublisher
from ledgerlink.services.matching import MatchEntry, MatchOptions, match_entries
from ledgerlink.storage.connections import ConnectionRepository
from ledgerlink.storage.items import ItemRepository, StaleItem
from ledgerlink.storage.lists import ListRepository
from ledgerlink.storage.merge import AtomicWriter, MergeRepository, RowWrite, StaleRows
from ledgerlink.storage.rules import RuleRepository, StaleRule

PROPOSAL_LIFETIME = timedelta(days=7)
UNDO_WINDOW = timedelta(days=7)
# Items that are not published and not in flight: their references are rewritten. Queued and
# retrying items are left alone (the publisher is working on them with what they hold).
REWRITABLE_ITEMS = frozenset({ItemStatus.WAITING, ItemStatus.REJECTED, ItemStatus.HELD, ItemStatus.FAILED})
LINE_REFERENCES: tuple[str, ...] = ("category", "tax_rate", "project", "project_2", "product")
# Tax rates are matched within their percentage, where a looser name test is safe.
TAX_RATE_THRESHOLD = 0.5
CONTACT_CODE_NAME_FLOOR = 0.5
EVENT_ITEM_IDS = 100  # item ids listed in the lists.merged event (the counts are always complete)
REWRITE_ATTEMPTS = 5


class StaleProposal(Conflict):
    code = "stale_proposal"


class NothingToMerge(Conflict):
    code = "nothing_to_merge"


class UndoExpired(Conflict):
    code = "undo_expired"


class MergeInterrupted(Conflict):
    code = "merge_conflict"


class RowChange(BaseModel):
    """One row the merge rewrote, as the undo record keeps it."""

    label: str  # item:<id> | rule:<kind>:<key>
    pk: str
    sk: str
    version_after: int
    before: str


class UndoRecord(BaseModel):
    mapping: dict[str, str]  # old record id -> new record id
    links: dict[str, str]  # name-only rule -> the contact it was linked to
    changes: list[RowChange]


# --- pure parts: references and rewriting ---------------------------------------------------------------


@dataclass
class References:
    """Which old entries rules and unpublished items refer to (and how often)."""

    rules: dict[str, int] = field(default_factory=dict)  # old record id -> rules
    items: dict[str, int] = field(default_factory=dict)  # old record id -> items
    name_only_rules: dict[str, StoredRule] = field(default_factory=dict)  # rule:<kind>:<key> -> rule
    rules_referring: int = 0  # rules with at least one old reference, or known by name only
    items_referring: int = 0


def old_contact_of(party: Party, old_connection_id: str) -> str | None:
    """The old contact a captured party means: its record id, or (for a party captured with the old
    ledger's own id only) the record that remote id became."""
    if party.id is not None:
        return party.id
    if party.remote_id:
        return record_id(old_connection_id, ListType.CONTACTS, party.remote_id)
    return None


def item_references(item: CapturedItem, old_connection_id: str) -> set[str]:
    refs: set[str] = set()
    party = item.party
    if party is not None and (contact := old_contact_of(party, old_connection_id)):
        refs.add(contact)
    for line in item.lines:
        refs |= {value for name in LINE_REFERENCES if (value := getattr(line, name))}
    if item.paid is not None and item.paid.bank_account:
        refs.add(item.paid.bank_account)
    return refs


def collect_references(
    rules: Iterable[StoredRule], items: Iterable[StoredItem], old_ids: set[str], old_connection_id: str
) -> References:
    found = References()
    for stored in rules:
        values = {value for name in RULE_REFERENCES if (value := getattr(stored.rule, name)) in old_ids}
        for value in values:
            found.rules[value] = found.rules.get(value, 0) + 1
        if stored.rule.contact is None:
            found.name_only_rules[name_only_rule_id(stored.kind, stored.key)] = stored
        found.rules_referring += bool(values) or stored.rule.contact is None
    for stored_item in items:
        values = item_references(stored_item.item, old_connection_id) & old_ids
        for value in values:
            found.items[value] = found.items.get(value, 0) + 1
        found.items_referring += bool(values)
    return found


def rewrite_rule(
    stored: StoredRule,
    mapping: Mapping[str, ListRecord],
    links: Mapping[str, ListRecord],
    destinations: Iterable[str],
) -> tuple[PartyRule, bool, bool]:
    """The rule with old references replaced; and whether it was linked to a contact by name, and
    whether its destination (which the new ledger lacks) was cleared."""
    rule = stored.rule
    changes: dict[str, object] = {
        name: mapping[value].id for name in RULE_REFERENCES if (value := getattr(rule, name)) in mapping
    }
    linked = False
    if rule.contact is None and (contact := links.get(name_only_rule_id(stored.kind, stored.key))):
        changes["contact"] = contact.id
        linked = True
    cleared = rule.destination is not None and rule.destination not in set(destinations)
    if cleared:
        changes["destination"] = None  # the connection's default destination applies
    return (rule.model_copy(update=changes) if changes else rule), linked, cleared


def rewrite_item(
    item: CapturedItem, mapping: Mapping[str, ListRecord], old_connection_id: str, destinations: Iterable[str]
) -> tuple[CapturedItem, bool]:
    """The captured item with old references replaced (a party also gets the new ledger's remote id);
    and whether its destination was cleared. Unmapped references stay as they are."""

    def line(old: Line) -> Line:
        changes = {
            name: mapping[value].id for name in LINE_REFERENCES if (value := getattr(old, name)) in mapping
        }
        return old.model_copy(update=changes) if changes else old

    changes: dict[str, object] = {"lines": [line(old) for old in item.lines]}
    party = item.party
    if party is not None:
        contact = mapping.get(old_contact_of(party, old_connection_id) or "")
        if contact is not None:
            role = "customer" if item.type == ItemType.SALES else "supplier"
            changes[role] = party.model_copy(update={"id": contact.id, "remote_id": contact.remote_id})
    bank_account = mapping.get(item.paid.bank_account or "") if item.paid is not None else None
    if item.paid is not None and bank_account is not None:
        changes["paid"] = item.paid.model_copy(update={"bank_account": bank_account.id})
    cleared = item.destination is not None and item.destination not in set(destinations)
    if cleared:
        changes["destination"] = None
    return item.model_copy(update=changes), cleared


def _group(list_type: ListType, record: ListRecord) -> str:
    if list_type == ListType.TAX_RATES:
        return "?" if record.rate is None else format(round(record.rate, 4), "g")
    if list_type == ListType.PROJECTS:
        # A project no line can carry (Xero Projects API) is never the new home of a tracking option.
        return str(record.dimension or 1) if record.codes_lines else "not on lines"
    return ""


def _tag(record: ListRecord) -> str:
    if record.is_supplier:
        return "supplier"
    return "customer" if record.is_customer else ""


def _entry(list_type: ListType, record: ListRecord) -> MatchEntry:
    return MatchEntry(record.id, record.name, _portable_code(record), _group(list_type, record), _tag(record))


def _portable_code(record: ListRecord) -> str | None:
    """A code people chose (an account code, a SKU) means the same in another organisation of the
    ledger; a code that is only the ledger's own record id (QuickBooks' account and tax code ids,
    FreeAgent's URLs) means nothing there, and is not compared."""
    return record.code if record.code and record.code != record.remote_id else None


def match_options(list_type: ListType, same_ledger: bool) -> MatchOptions:
    """How one list is matched (also what bench/merge_bench.py measures)."""
    # A code means the same thing only within one ledger (QuickBooks' are its internal ids).
    if list_type == ListType.TAX_RATES:
        return MatchOptions(
            compare_codes=same_ledger,
            threshold=TAX_RATE_THRESHOLD,
            sole_candidate_reason=MatchReason.SAME_RATE,
        )
    if list_type == ListType.CONTACTS:
        # Contact numbers are sequences each organisation hands out (SUP-00001 is a different
        # supplier in each): the same number counts only when the names agree as well.
        return MatchOptions(compare_codes=same_ledger, code_name_floor=CONTACT_CODE_NAME_FLOOR)
    return MatchOptions(compare_codes=same_ledger)


def propose_list(
    list_type: ListType,
    old: Mapping[str, ListRecord],
    new: Iterable[ListRecord],
    references: References,
    *,
    same_ledger: bool,
) -> ListProposal:
    """The proposal for one list: referenced old entries (and, for contacts, rules known by name
    only) against the new list's active entries."""
    referenced = sorted(
        record_id_value
        for record_id_value in {*references.rules, *references.items}
        if record_id_value in old and old[record_id_value].list_type == list_type
    )
    entries = [_entry(list_type, old[value]) for value in referenced]
    if list_type == ListType.CONTACTS:
        entries += [
            MatchEntry(pseudo, stored.rule.name, None, "", stored.kind.value)
            for pseudo, stored in sorted(references.name_only_rules.items())
        ]
    active = {record.id: record for record in new if record.status == RecordStatus.ACTIVE}
    matches = match_entries(
        entries, [_entry(list_type, r) for r in active.values()], match_options(list_type, same_ledger)
    )
    totals = ListTotals(entries=len(matches))
    proposed = []
    for entry, match in zip(entries, matches, strict=True):
        target = active.get(match.new_id or "")
        setattr(totals, match.reason.value, getattr(totals, match.reason.value) + 1)
        totals.shared += 1 if match.shared_with else 0
        proposed.append(
            ProposedEntry(
                old_id=entry.id,
                old_name=entry.name,
                old_code=old[entry.id].code if entry.id in old else None,  # as the ledger shows it
                new_id=target.id if target else None,
                new_name=target.name if target else None,
                new_code=target.code if target else None,
                reason=match.reason,
                score=match.score,
                shared_with=list(match.shared_with),
                rules=references.rules.get(entry.id, 1 if entry.id in references.name_only_rules else 0),
                items=references.items.get(entry.id, 0),
            )
        )
    return ListProposal(list_type=list_type, totals=totals, entries=proposed)


# --- the service ----------------------------------------------------------------------------------------


@dataclass
class _Final:
    """What an apply will do: the chosen new record per old entry, per list."""

    mapping: dict[str, ListRecord]
    links: dict[str, ListRecord]
    outcomes: dict[ListType, ListOutcome]


class MergeService:
    def __init__(
        self,
        *,
        connections: ConnectionRepository,
        lists: ListRepository,
        rules: RuleRepository,
        items: ItemRepository,
        merges: MergeRepository,
        writer: AtomicWriter,
        events: EventPublisher,
        clock: Clock,
    ):
        self._connections = connections
        self._lists = lists
        self._rules = rules
        self._items = items
        self._merges = merges
        self._writer = writer
        self._events = events
        self._clock = clock

    # --- preview ---------------------------------------------------------------------------------------

    def preview(self, caller: Caller) -> MergeProposal:
        require_admin(caller, "merge lists")
        connection = self._connection_of(caller)
        previous = connection.previous
        if previous is None or not previous.lists_kept:
            raise NothingToMerge(
                "there are no earlier lists to merge: Merge Lists follows Change connection, or a "
                "Disconnect that kept the lists and a new connection"
            )
        if connection.status == ConnectionStatus.PENDING_ORGANISATION:
            raise InvalidState("choose the organisation first: the merge maps onto its lists")
        wanted = set(registry.capabilities(connection.provider).lists) & set(MERGED_LISTS)
        if any(connection.lists.get(t) is None or connection.lists[t].refreshed_at is None for t in wanted):
            raise InvalidState("the new lists are still being imported; preview again when they are")
        old = {t: {r.id: r for r in self._lists.records(previous.connection_id, t)} for t in MERGED_LISTS}
        old_ids = {record_id_value for records in old.values() for record_id_value in records}
        references = collect_references(
            [stored for stored, _version in self._rules.list(caller.business_id)],
            [stored for stored, _version in self._rewritable_items(caller.business_id)],
            old_ids,
            previous.connection_id,
        )
        same_ledger = previous.provider == connection.provider
        lists = [
            propose_list(
                t,
                old[t],
                self._lists.records(connection.connection_id, t),
                references,
                same_ledger=same_ledger,
            )
            for t in MERGED_LISTS
        ]
        now = self._clock.now()
        proposal = MergeProposal(
            proposal_id=uuid.uuid4().hex,
            connection_id=connection.connection_id,
            previous_connection_id=previous.connection_id,
            from_provider=previous.provider,
            to_provider=connection.provider,
            created_at=now,
            valid_until=now + PROPOSAL_LIFETIME,
            lists_refreshed_at=_freshness(connection),
            lists=lists,
            rules=references.rules_referring,
            items=references.items_referring,
        )
        self._merges.create(
            MergeRecord(
                proposal_id=proposal.proposal_id,
                business_id=caller.business_id,
                connection_id=connection.connection_id,
                created_at=now,
                valid_until=proposal.valid_until,
            ),
            proposal,
        )
        logger.info(
            "merge proposed",
            proposal_id=proposal.proposal_id,
            entries={p.list_type.value: p.totals.entries for p in lists},
        )
        return proposal

    # --- apply -----------------------------------------------------------------------------------------

    def apply(self, caller: Caller, request: ApplyMergeRequest) -> MergeResult:
        require_admin(caller, "merge lists")
        record, version = self._record_of(caller, request.proposal_id)
        if record.state == MergeState.APPLIED:
            assert record.result is not None
            self._finish_rolling_forward(record)
            return record.result  # applied already: the same answer, nothing done twice
        if record.state == MergeState.UNDONE:
            raise StaleProposal("this merge was applied and undone; preview again to merge anew")
        now = self._clock.now()
        if now > record.valid_until:
            raise StaleProposal("this proposal is more than seven days old; preview again")
        proposal = self._merges.proposal(record)
        connection = self._connection_of(caller)
        if (
            connection.connection_id != proposal.connection_id
            or _freshness(connection) != proposal.lists_refreshed_at
        ):
            raise StaleProposal(
                "the lists were refreshed (or the connection changed) since this proposal; preview again"
            )
        final = self._final(connection, proposal, request)
        destinations = registry.capabilities(connection.provider).destinations
        operation_id = f"{record.proposal_id}-apply"
        rows, changes, counts = self._rewrites(caller, connection, proposal, final, destinations)
        result = MergeResult(
            proposal_id=record.proposal_id,
            applied_at=now,
            applied_by=caller.user_id,
            undo_until=now + UNDO_WINDOW,
            lists=final.outcomes,
            rules_rewritten=counts["rules"],
            rules_linked=counts["linked"],
            items_rewritten=counts["items"],
            destinations_cleared=counts["destinations"],
            write_mode="transaction",
        )
        undo = UndoRecord(
            mapping={old: new.id for old, new in final.mapping.items()},
            links={pseudo: contact.id for pseudo, contact in final.links.items()},
            changes=changes,
        )
        undo_items = self._merges.undo_items(record, undo)
        mode = self._writer.mode(rows, undo_items, commit_actions=2)
        result = result.model_copy(update={"write_mode": mode})
        applied = record.model_copy(
            update={"state": MergeState.APPLIED, "result": result, "undo_parts": len(undo_items)}
        )
        commit = [
            self._merges.header_action(applied, version, expected_state=MergeState.PROPOSED),
            self._connections.save_action(connection.model_copy(update={"merge_pending": False})),
        ]
        try:
            self._writer.write(
                mode=mode,
                business_id=caller.business_id,
                operation_id=operation_id,
                rows=rows,
                puts=undo_items,
                commit=commit,
                now=now,
                on_lost_row=self._rewrite_again(caller.business_id, connection, proposal, final.mapping),
            )
        except StaleRows as error:
            again = self._merges.get(caller.business_id, record.proposal_id)
            if again is not None and again[0].state == MergeState.APPLIED and again[0].result is not None:
                return again[0].result  # a concurrent apply of the same proposal won: same answer
            raise MergeInterrupted(
                "rules, items or the connection changed while merging; nothing was changed, try again"
            ) from error
        self._events.publish(
            "lists.merged",
            {
                "business_id": caller.business_id,
                "connection_id": connection.connection_id,
                "previous_connection_id": proposal.previous_connection_id,
                "proposal_id": record.proposal_id,
                "lists": {t.value: o.model_dump() for t, o in final.outcomes.items()},
                "rules_rewritten": result.rules_rewritten,
                "items_rewritten": result.items_rewritten,
                # The capture product's copies of these items are out of date: read them again.
                "item_ids": [c.label.removeprefix("item:") for c in changes if c.label.startswith("item:")][
                    :EVENT_ITEM_IDS
                ],
            },
        )
        logger.info("lists merged", proposal_id=record.proposal_id, mode=mode, rows=len(rows))
        return result

    def _final(self, connection: Connection, proposal: MergeProposal, request: ApplyMergeRequest) -> _Final:
        """The proposal with the Admin's overrides and skipped lists, checked (422 naming the field)."""
        entries = {entry.old_id: (p.list_type, entry) for p in proposal.lists for entry in p.entries}
        new = {
            t: {r.id: r for r in self._lists.records(connection.connection_id, t)}
            for t in MERGED_LISTS
            if t not in request.skip
        }
        for old_id, new_id in request.overrides.items():
            field_name = f"overrides.{old_id}"
            if old_id not in entries:
                raise Unprocessable(f"{old_id} is not an entry of this proposal", field=field_name)
            list_type = entries[old_id][0]
            if list_type in request.skip:
                raise Unprocessable(
                    f"{old_id} belongs to {list_type.value}, which is skipped", field=field_name
                )
            if new_id is None:
                continue
            target = new[list_type].get(new_id)
            if list_type_of(new_id) != list_type or target is None:
                raise Unprocessable(
                    f"{new_id} is not in the imported {list_type.value} of the new connection",
                    field=field_name,
                )
            if target.status == RecordStatus.ARCHIVED:
                raise Unprocessable(
                    f"{target.name} is archived in the ledger: choose an active one", field=field_name
                )
        mapping: dict[str, ListRecord] = {}
        links: dict[str, ListRecord] = {}
        outcomes: dict[ListType, ListOutcome] = {}
        for list_proposal in proposal.lists:
            list_type = list_proposal.list_type
            if list_type in request.skip:
                outcomes[list_type] = ListOutcome(skipped=True, unmatched=len(list_proposal.entries))
                continue
            outcome = ListOutcome()
            for entry in list_proposal.entries:
                chosen = request.overrides.get(entry.old_id, entry.new_id)
                target = new[list_type].get(chosen or "")
                if target is None or target.status == RecordStatus.ARCHIVED:
                    outcome.unmatched += 1
                    continue
                outcome.mapped += 1
                (links if entry.old_id.startswith("rule:") else mapping)[entry.old_id] = target
            outcomes[list_type] = outcome
        return _Final(mapping=mapping, links=links, outcomes=outcomes)

    def _rewrites(
        self,
        caller: Caller,
        connection: Connection,
        proposal: MergeProposal,
        final: _Final,
        destinations: Mapping[ItemType, tuple[str, ...]],
    ) -> tuple[list[RowWrite], list[RowChange], dict[str, int]]:
        now = self._clock.now()
        rows: list[RowWrite] = []
        changes: list[RowChange] = []
        counts = {"rules": 0, "linked": 0, "items": 0, "destinations": 0}
        for stored, version in self._rules.list(caller.business_id):
            rule, linked, cleared = rewrite_rule(
                stored, final.mapping, final.links, destinations.get(stored.kind.item_type, ())
            )
            if rule == stored.rule:
                continue
            rewritten = stored.model_copy(
                update={"rule": rule, "updated_at": now, "updated_by": f"merge:{proposal.proposal_id}"}
            )
            pk, sk = self._rules.key_of(caller.business_id, stored.kind, stored.key)
            label = f"rule:{stored.kind.value}:{stored.key}"
            rows.append(RowWrite(pk, sk, version, rewritten.model_dump_json(), label))
            changes.append(
                RowChange(
                    label=label, pk=pk, sk=sk, version_after=version + 1, before=stored.model_dump_json()
                )
            )
            counts["rules"] += 1
            counts["linked"] += linked
            counts["destinations"] += cleared
        for stored_item, version in self._rewritable_items(caller.business_id):
            item, cleared = rewrite_item(
                stored_item.item,
                final.mapping,
                proposal.previous_connection_id,
                destinations.get(stored_item.item.type, ()),
            )
            if item == stored_item.item:
                continue
            # New content, new revision: the idempotency key of what is sent follows the content.
            rewritten_item = stored_item.model_copy(
                update={"item": item, "revision": stored_item.revision + 1, "updated_at": now}
            )
            pk, sk = self._items.key_of(caller.business_id, stored_item.item.id)
            label = f"item:{stored_item.item.id}"
            rows.append(RowWrite(pk, sk, version, rewritten_item.model_dump_json(), label))
            changes.append(
                RowChange(
                    label=label, pk=pk, sk=sk, version_after=version + 1, before=stored_item.model_dump_json()
                )
            )
            counts["items"] += 1
            counts["destinations"] += cleared
        return rows, changes, counts

    def _rewrite_again(
        self,
        business_id: str,
        connection: Connection,
        proposal: MergeProposal,
        mapping: Mapping[str, ListRecord],
    ) -> _LostRowRewriter:
        return _LostRowRewriter(
            items=self._items,
            rules=self._rules,
            business_id=business_id,
            connection=connection,
            old_connection_id=proposal.previous_connection_id,
            mapping=mapping,
        )

    def _finish_rolling_forward(self, record: MergeRecord) -> None:
        """A staged apply whose roll forward was cut short (the function stopped) is finished by the
        next call; readers already see it whole meanwhile."""
        if record.result is None or record.result.write_mode != "staged":
            return
        undo = UndoRecord.model_validate_json(self._merges.undo_record(record))
        connection = self._connections.get(record.business_id)
        if connection is None:
            return
        new_by_id = self._records_by_id(connection)
        mapping = {old: new_by_id[new] for old, new in undo.mapping.items() if new in new_by_id}
        rows = [RowWrite(c.pk, c.sk, c.version_after - 1, "", c.label) for c in undo.changes]
        self._writer.roll_forward(
            business_id=record.business_id,
            operation_id=f"{record.proposal_id}-apply",
            rows=rows,
            on_lost_row=_LostRowRewriter(
                items=self._items,
                rules=self._rules,
                business_id=record.business_id,
                connection=connection,
                old_connection_id=_previous_id(connection),
                mapping=mapping,
            ),
        )

    # --- undo ------------------------------------------------------------------------------------------

    def undo(self, caller: Caller, request: UndoMergeRequest) -> UndoResult:
        require_admin(caller, "undo a merge")
        record, version = self._record_of(caller, request.proposal_id)
        if record.state == MergeState.UNDONE:
            assert record.undo_result is not None
            return record.undo_result
        if record.state != MergeState.APPLIED or record.result is None:
            raise InvalidState("this proposal was never applied: there is nothing to undo")
        now = self._clock.now()
        if now > record.result.undo_until:
            raise UndoExpired("a merge can be undone for seven days after it was applied; this one is older")
        connection = self._connection_of(caller)
        if connection.connection_id != record.connection_id:
            raise InvalidState("the connection changed since this merge; it cannot be undone any more")
        self._finish_rolling_forward(record)
        undo = UndoRecord.model_validate_json(self._merges.undo_record(record))
        rows: list[RowWrite] = []
        restored = {"rule": 0, "item": 0}
        kept = 0
        for change in undo.changes:
            row = self._restored_row(caller.business_id, change, now)
            if row is None:
                kept += 1  # changed since the merge (edited, published): left as it is now
                continue
            rows.append(row)
            restored[change.label.split(":", 1)[0]] += 1
        result = UndoResult(
            proposal_id=record.proposal_id,
            undone_at=now,
            undone_by=caller.user_id,
            rules_restored=restored["rule"],
            items_restored=restored["item"],
            kept=kept,
        )
        undone = record.model_copy(update={"state": MergeState.UNDONE, "undo_result": result})
        commit = [
            self._merges.header_action(undone, version, expected_state=MergeState.APPLIED),
            self._connections.save_action(connection.model_copy(update={"merge_pending": True})),
        ]
        try:
            self._writer.write(
                mode=self._writer.mode(rows, [], commit_actions=len(commit)),
                business_id=caller.business_id,
                operation_id=f"{record.proposal_id}-undo",
                rows=rows,
                puts=[],
                commit=commit,
                now=now,
                # Changed after being staged: whoever changed it read the restored version.
                on_lost_row=lambda _row: None,
            )
        except StaleRows as error:
            again = self._merges.get(caller.business_id, record.proposal_id)
            if again is not None and again[0].state == MergeState.UNDONE and again[0].undo_result is not None:
                return again[0].undo_result
            raise MergeInterrupted(
                "rules, items or the connection changed while undoing; try again"
            ) from error
        self._events.publish(
            "lists.merge_undone",
            {
                "business_id": caller.business_id,
                "connection_id": connection.connection_id,
                "proposal_id": record.proposal_id,
                **result.model_dump(include={"rules_restored", "items_restored", "kept"}),
            },
        )
        return result

    def _restored_row(self, business_id: str, change: RowChange, now: datetime) -> RowWrite | None:
        kind, _, rest = change.label.partition(":")
        if kind == "item":
            found_item = self._items.get(business_id, rest)
            if found_item is None or found_item[1] != change.version_after:
                return None
            before = StoredItem.model_validate_json(change.before)
            restored = before.model_copy(update={"revision": found_item[0].revision + 1, "updated_at": now})
            return RowWrite(change.pk, change.sk, found_item[1], restored.model_dump_json(), change.label)
        rule_kind, _, key = rest.partition(":")
        found_rule = self._rules.get(business_id, RuleKind(rule_kind), key)
        if found_rule is None or found_rule[1] != change.version_after:
            return None
        return RowWrite(change.pk, change.sk, found_rule[1], change.before, change.label)

    # --- helpers ---------------------------------------------------------------------------------------

    def _rewritable_items(self, business_id: str) -> list[tuple[StoredItem, int]]:
        return [
            (stored, version)
            for stored, version in self._items.list_with_versions(business_id)
            if stored.status in REWRITABLE_ITEMS
        ]

    def _records_by_id(self, connection: Connection) -> dict[str, ListRecord]:
        return {r.id: r for t in MERGED_LISTS for r in self._lists.records(connection.connection_id, t)}

    def _record_of(self, caller: Caller, proposal_id: str) -> tuple[MergeRecord, int]:
        found = self._merges.get(caller.business_id, proposal_id)
        if found is None:
            raise ResourceNotFound(f"there is no merge proposal {proposal_id}; preview again")
        return found

    def _connection_of(self, caller: Caller) -> Connection:
        connection = self._connections.get(caller.business_id)
        if connection is None:
            raise ResourceNotFound("this business has no accounting connection yet")
        return connection


class _LostRowRewriter:
    """A staged row whose copy vanished (a writer replaced the row between staging and rolling
    forward): the merge's mapping is applied again to whatever the row holds now. Mapping old ids
    to new ones is idempotent, so this is safe however often it runs."""

    def __init__(
        self,
        *,
        items: ItemRepository,
        rules: RuleRepository,
        business_id: str,
        connection: Connection,
        old_connection_id: str,
        mapping: Mapping[str, ListRecord],
    ):
        self._items = items
        self._rules = rules
        self._business_id = business_id
        self._connection = connection
        self._old_connection_id = old_connection_id
        self._mapping = mapping
        self._destinations = registry.capabilities(connection.provider).destinations

    def __call__(self, row: RowWrite) -> None:
        kind, _, rest = row.label.partition(":")
        for _attempt in range(REWRITE_ATTEMPTS):
            try:
                if kind == "item":
                    self._item(rest)
                else:
                    rule_kind, _, key = rest.partition(":")
                    self._rule(RuleKind(rule_kind), key)
                return
            except (StaleItem, StaleRule):
                continue
        logger.warning("a merged row kept changing; left for the next merge", row=row.label)

    def _item(self, item_id: str) -> None:
        items = self._items
        found = items.get(self._business_id, item_id)
        if found is None or found[0].status not in REWRITABLE_ITEMS:
            return
        stored, version = found
        item, _cleared = rewrite_item(
            stored.item, self._mapping, self._old_connection_id, self._destinations.get(stored.item.type, ())
        )
        if item != stored.item:
            items.save(stored.model_copy(update={"item": item, "revision": stored.revision + 1}), version)

    def _rule(self, kind: RuleKind, key: str) -> None:
        rules = self._rules
        found = rules.get(self._business_id, kind, key)
        if found is None:
            return
        stored, version = found
        rule, _linked, _cleared = rewrite_rule(
            stored, self._mapping, {}, self._destinations.get(kind.item_type, ())
        )
        if rule != stored.rule:
            rules.save(self._business_id, stored.model_copy(update={"rule": rule}), version)


def _freshness(connection: Connection) -> dict[ListType, datetime | None]:
    return {t: (connection.lists[t].refreshed_at if t in connection.lists else None) for t in MERGED_LISTS}


def _previous_id(connection: Connection) -> str:
    return connection.previous.connection_id if connection.previous else ""
