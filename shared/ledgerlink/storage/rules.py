"""Supplier and customer rules: one item per rule, beside the business, found by key or by name."""

from __future__ import annotations

from typing import Any

from ledgerlink.models.lists import normalise_name
from ledgerlink.models.rules import PartyRule, RuleKind, StoredRule
from ledgerlink.storage.dynamo import ConditionFailed, Table
from ledgerlink.storage.merge import StagedReads
from ledgerlink.storage.schema import (
    GSI1_NAME,
    GSI1_PARTITION_KEY,
    GSI1_SORT_KEY,
    PARTITION_KEY,
    RULE_SK_PREFIX,
    SORT_KEY,
    business_pk,
    rule_name_gsi1pk,
    rule_name_gsi1sk,
    rule_sk,
    rule_sk_prefix,
)


class StaleRule(ConditionFailed):
    """The rule changed (or appeared, or went) since it was read."""


class RuleRepository:
    def __init__(self, table: Table):
        self._table = table
        self._staged = StagedReads(table)

    def get(self, business_id: str, kind: RuleKind, key: str) -> tuple[StoredRule, int] | None:
        """The rule and its storage version (for a conditional save)."""
        raw = self._table.get(business_pk(business_id), rule_sk(kind, key))
        if raw is None:
            return None
        return StoredRule.model_validate_json(self._staged.data_of(raw)), int(raw["version"])

    def list(self, business_id: str, kind: RuleKind | None = None) -> list[tuple[StoredRule, int]]:
        prefix = rule_sk_prefix(kind) if kind else RULE_SK_PREFIX
        states: dict[tuple[str, str], str] = {}
        return [
            (StoredRule.model_validate_json(self._staged.data_of(raw, states)), int(raw["version"]))
            for raw in self._table.query(business_pk(business_id), sk_prefix=prefix, consistent=True)
        ]

    def save(self, business_id: str, stored: StoredRule, expected_version: int | None) -> int:
        """Create the rule (``expected_version`` None: only if there is none) or replace it if it is
        still at ``expected_version``. Returns the new version."""
        version = (expected_version or 0) + 1
        if expected_version is None:
            condition, values = "attribute_not_exists(pk)", None
        else:
            condition, values = "version = :expected", {":expected": expected_version}
        try:
            self._table.put(self.row(business_id, stored, version), condition=condition, values=values)
        except ConditionFailed as error:
            raise StaleRule(f"the {stored.kind} rule {stored.key} changed meanwhile") from error
        return version

    def delete(self, business_id: str, kind: RuleKind, key: str) -> bool:
        removed = self._table.delete(business_pk(business_id), rule_sk(kind, key), return_old=True)
        return removed is not None

    def for_party(
        self, business_id: str, kind: RuleKind | str, *, key: str | None, name: str
    ) -> PartyRule | None:
        """The rule for a supplier or customer of an item: by the caller's key first, then by the
        party's normalised name (``kind``: "supplier" or "customer")."""
        rule_kind = RuleKind(kind)
        if key:
            found = self.get(business_id, rule_kind, key)
            if found is not None:
                return found[0].rule
        wanted = normalise_name(name)
        if not wanted:
            return None
        # Eventually consistent (a GSI): a rule saved a moment ago may be found by key only.
        candidates = [
            StoredRule.model_validate_json(self._staged.data_of(raw))
            for raw in self._table.query(
                rule_name_gsi1pk(business_id, rule_kind),
                index=GSI1_NAME,
                pk_name=GSI1_PARTITION_KEY,
                sk_name=GSI1_SORT_KEY,
                sk_prefix=rule_name_gsi1sk(wanted, ""),
            )
        ]
        return pick_by_name(candidates, wanted)

    def key_of(self, business_id: str, kind: RuleKind, key: str) -> tuple[str, str]:
        return business_pk(business_id), rule_sk(kind, key)

    @staticmethod
    def row(business_id: str, stored: StoredRule, version: int) -> dict[str, Any]:
        row: dict[str, Any] = {
            PARTITION_KEY: business_pk(business_id),
            SORT_KEY: rule_sk(stored.kind, stored.key),
            "data": stored.model_dump_json(),
            "version": version,
        }
        normalised = normalise_name(stored.rule.name)
        if normalised:
            row[GSI1_PARTITION_KEY] = rule_name_gsi1pk(business_id, stored.kind)
            row[GSI1_SORT_KEY] = rule_name_gsi1sk(normalised, stored.key)
        return row


def pick_by_name(rules: list[StoredRule], normalised: str) -> PartyRule | None:
    """Several rules may carry one name (keyed differently by the capture product): the one keyed by
    the name itself wins, then the lowest key, so every reader picks the same rule."""
    named = [stored for stored in rules if normalise_name(stored.rule.name) == normalised]
    if not named:
        return None
    return min(named, key=lambda stored: (stored.key != normalised, stored.key)).rule
