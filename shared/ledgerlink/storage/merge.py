"""Merge proposals, their undo records, and the all-or-nothing write that applies (or undoes) a merge.

Applying a merge rewrites many rows (rules and unpublished items, each an item of the table with a
``data`` attribute and a ``version``) and must look atomic to every reader. ``AtomicWriter`` does it
one of two ways:

* **one transaction** when everything fits in a TransactWriteItems request (at most 100 actions,
  4 MB): the rows, the merge header, the undo record and the connection, all or none;
* otherwise **stage, flip, roll forward**. (1) Each row gets its new content as a staged copy
  (``staged_data``, ``staged_by`` = the operation id) under a condition on its version; nobody reads
  staged copies yet, so nothing visible changes, and a failure here only leaves garbage that is
  ignored and cleaned. (2) One small transaction flips the operation's state item from ``staging``
  to ``committed`` together with the merge header and the connection: the single commit point.
  (3) Every row's staged copy becomes its ``data`` (``version`` + 1). The roll forward is
  idempotent and resumable: the next apply call (or undo) finishes it.

Readers see either the old rows or the new ones, never a mix: between (2) and the end of (3) a row
still carrying a staged copy is read through ``StagedReads``, which returns the staged copy when its
operation is committed. Rows without a staged copy (the steady state) cost no extra read.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel

from ledgerlink.models.merge import MergeProposal, MergeRecord, MergeState
from ledgerlink.storage.dynamo import TRANSACTION_BYTES, TRANSACTION_LIMIT, ConditionFailed, Table
from ledgerlink.storage.schema import (
    PARTITION_KEY,
    SORT_KEY,
    TTL_ATTRIBUTE,
    business_pk,
    merge_operation_sk,
    merge_part_sk,
    merge_sk,
)

# A DynamoDB item holds at most 400 KB: bodies are compressed and split into parts well below that.
PART_BYTES = 300_000
# Everything of a merge expires by itself after the proposal's validity and the undo window.
RETENTION = timedelta(days=16)
# A staging claim older than this belongs to a request that died (functions stop after 29 s).
ABANDONED_AFTER = timedelta(minutes=5)

STAGED_DATA = "staged_data"
STAGED_BY = "staged_by"
OPERATION_STAGING = "staging"
OPERATION_COMMITTED = "committed"
OPERATION_DONE = "done"
OPERATION_ABORTED = "aborted"
VISIBLE_STATES = frozenset({OPERATION_COMMITTED, OPERATION_DONE})


class StaleRows(ConditionFailed):
    """A row changed (or was removed) between reading it and writing it."""


@dataclass(frozen=True)
class RowWrite:
    """The new ``data`` of one row, written only if the row is still at ``expected_version``."""

    pk: str
    sk: str
    expected_version: int
    data: str
    label: str = ""  # the caller's name for the row (what it is), handed back in on_lost_row


WriteMode = Literal["transaction", "staged"]
# Room kept in a transaction for the commit actions (merge header with its result, the connection).
COMMIT_RESERVE_BYTES = 64_000


class StagedReads:
    """What a reader should see of a row: its staged copy once the operation that staged it has
    committed, its ``data`` otherwise. Repositories that read rules or items go through this."""

    def __init__(self, table: Table):
        self._table = table

    def data_of(self, raw: Mapping[str, Any], states: dict[tuple[str, str], str] | None = None) -> str:
        operation = raw.get(STAGED_BY)
        if operation is None or STAGED_DATA not in raw:
            return str(raw["data"])
        key = (str(raw[PARTITION_KEY]), str(operation))
        cache = {} if states is None else states
        if key not in cache:
            state_item = self._table.get(key[0], merge_operation_sk(key[1]))
            cache[key] = str(state_item["state"]) if state_item else OPERATION_ABORTED
        return str(raw[STAGED_DATA] if cache[key] in VISIBLE_STATES else raw["data"])


def _pack(model: BaseModel) -> list[bytes]:
    blob = zlib.compress(model.model_dump_json().encode(), 6)
    return [blob[start : start + PART_BYTES] for start in range(0, len(blob), PART_BYTES)] or [b""]


def _unpack(parts: Sequence[bytes]) -> str:
    return zlib.decompress(b"".join(parts)).decode()


def _binary(value: Any) -> bytes:
    return bytes(getattr(value, "value", value))


class MergeRepository:
    def __init__(self, table: Table):
        self._table = table

    # --- proposals and their header ---------------------------------------------------------------

    def create(self, record: MergeRecord, proposal: MergeProposal) -> MergeRecord:
        """Store a proposal: its body in parts first, then the header that makes it exist."""
        parts = _pack(proposal)
        expires = self._expires(record.created_at)
        for number, part in enumerate(parts):
            self._table.put(self._part(record, "P", number, part, expires))
        stored = record.model_copy(update={"proposal_parts": len(parts)})
        self._table.put(
            self._header(stored, version=1, expires=expires), condition="attribute_not_exists(pk)"
        )
        return stored

    def get(self, business_id: str, proposal_id: str) -> tuple[MergeRecord, int] | None:
        raw = self._table.get(business_pk(business_id), merge_sk(proposal_id))
        if raw is None:
            return None
        return MergeRecord.model_validate_json(raw["data"]), int(raw["version"])

    def proposal(self, record: MergeRecord) -> MergeProposal:
        return MergeProposal.model_validate_json(_unpack(self._parts(record, "P", record.proposal_parts)))

    def header_action(
        self, record: MergeRecord, version: int, *, expected_state: MergeState
    ) -> dict[str, Any]:
        """The transaction action that moves the header on, only from ``expected_state`` and
        ``version``: two applies of one proposal can never both commit."""
        return self._table.update_action(
            business_pk(record.business_id),
            merge_sk(record.proposal_id),
            update="SET #data = :data, #state = :state, #version = :next",
            condition="#version = :version AND #state = :expected",
            names={"#data": "data", "#state": "state", "#version": "version"},
            values={
                ":data": record.model_dump_json(),
                ":state": record.state.value,
                ":next": version + 1,
                ":version": version,
                ":expected": expected_state.value,
            },
        )

    # --- undo records -------------------------------------------------------------------------------

    def undo_items(self, record: MergeRecord, undo: BaseModel) -> list[dict[str, Any]]:
        """The items holding the undo record (written with the apply, or just before its flip)."""
        expires = self._expires(record.created_at)
        return [self._part(record, "U", number, part, expires) for number, part in enumerate(_pack(undo))]

    def undo_record(self, record: MergeRecord) -> str:
        """The undo record as written (JSON); the service owns its model."""
        return _unpack(self._parts(record, "U", record.undo_parts))

    # --- helpers ------------------------------------------------------------------------------------

    def _parts(self, record: MergeRecord, part: str, count: int) -> list[bytes]:
        pk = business_pk(record.business_id)
        return [
            _binary(self._raw_part(pk, merge_part_sk(record.proposal_id, part, n))["blob"])
            for n in range(count)
        ]

    def _raw_part(self, pk: str, sk: str) -> dict[str, Any]:
        raw = self._table.get(pk, sk)
        if raw is None:
            raise ConditionFailed(f"merge part {sk} is missing")
        return raw

    @staticmethod
    def _expires(created_at: datetime) -> int:
        return int((created_at + RETENTION).timestamp())

    @staticmethod
    def _part(record: MergeRecord, part: str, number: int, blob: bytes, expires: int) -> dict[str, Any]:
        return {
            PARTITION_KEY: business_pk(record.business_id),
            SORT_KEY: merge_part_sk(record.proposal_id, part, number),
            "blob": blob,
            TTL_ATTRIBUTE: expires,
        }

    @staticmethod
    def _header(record: MergeRecord, *, version: int, expires: int) -> dict[str, Any]:
        return {
            PARTITION_KEY: business_pk(record.business_id),
            SORT_KEY: merge_sk(record.proposal_id),
            "data": record.model_dump_json(),
            "state": record.state.value,
            "version": version,
            TTL_ATTRIBUTE: expires,
        }


class AtomicWriter:
    """Writes a set of row changes plus a few commit actions all together or not at all (see the
    module's docstring for the two ways)."""

    def __init__(
        self,
        table: Table,
        *,
        transaction_limit: int = TRANSACTION_LIMIT,
        transaction_bytes: int = TRANSACTION_BYTES,
    ):
        self._table = table
        self._transaction_limit = min(transaction_limit, TRANSACTION_LIMIT)
        self._transaction_bytes = transaction_bytes

    def mode(
        self, rows: Sequence[RowWrite], puts: Sequence[Mapping[str, Any]], commit_actions: int
    ) -> WriteMode:
        """One transaction if the rows, the new items and the commit actions fit in one request."""
        size = sum(len(row.data) + len(row.pk) + len(row.sk) + 64 for row in rows)
        size += sum(len(json.dumps(item, default=str)) for item in puts) + COMMIT_RESERVE_BYTES
        fits = len(rows) + len(puts) + commit_actions <= self._transaction_limit
        return "transaction" if fits and size <= self._transaction_bytes else "staged"

    def write(
        self,
        *,
        mode: WriteMode,
        business_id: str,
        operation_id: str,
        rows: Sequence[RowWrite],
        puts: Sequence[Mapping[str, Any]],
        commit: Sequence[Mapping[str, Any]],
        now: datetime,
        on_lost_row: Callable[[RowWrite], None],
    ) -> None:
        """Apply ``rows``, ``puts`` (new items, e.g. the undo record) and ``commit`` (transaction
        actions: the merge header, the connection) atomically, the way ``mode`` (from ``mode()``)
        says.

        Raises StaleRows, having changed nothing visible, when a row moved on since it was read,
        a commit condition failed (e.g. another apply committed first) or another write of the
        same operation is under way."""
        if mode == "transaction":
            actions = [
                *(self._row_action(row) for row in rows),
                *(self._table.put_action(item) for item in puts),
                *commit,
            ]
            try:
                self._table.transact_write(actions)
            except ConditionFailed as error:
                raise StaleRows("something changed while merging") from error
            return
        pk = business_pk(business_id)
        self._start(pk, operation_id, now)
        try:
            for row in rows:
                self._stage(row, operation_id)
            for item in puts:
                self._table.put(item)
            self._table.transact_write([self._flip_action(pk, operation_id), *commit])
        except ConditionFailed as error:
            self._abandon(pk, operation_id, rows)
            raise StaleRows("something changed while merging") from error
        self.roll_forward(
            business_id=business_id, operation_id=operation_id, rows=rows, on_lost_row=on_lost_row
        )

    def roll_forward(
        self,
        *,
        business_id: str,
        operation_id: str,
        rows: Sequence[RowWrite],
        on_lost_row: Callable[[RowWrite], None],
    ) -> bool:
        """Finish a committed staged write (idempotent). ``on_lost_row`` is called for a row whose
        staged copy is gone: a writer replaced the row meanwhile, so its change is worked out again
        from what the row holds now. Returns False if the operation never committed."""
        pk = business_pk(business_id)
        state = self._table.get(pk, merge_operation_sk(operation_id))
        if state is None or state["state"] not in VISIBLE_STATES:
            return False
        if state["state"] == OPERATION_DONE:
            return True
        for row in rows:
            try:
                self._table.update(
                    row.pk,
                    row.sk,
                    update="SET #data = #staged, #version = #version + :one REMOVE #staged, #by",
                    condition="#by = :operation",
                    names={"#data": "data", "#staged": STAGED_DATA, "#by": STAGED_BY, "#version": "version"},
                    values={":operation": operation_id, ":one": 1},
                )
            except ConditionFailed:
                on_lost_row(row)
        # Every row is rolled forward (or was replaced by a writer who read it whole): nothing reads
        # through the operation any more, so it may expire.
        self._table.update(
            pk,
            merge_operation_sk(operation_id),
            update="SET #state = :done, #expires = :expires",
            names={"#state": "state", "#expires": TTL_ATTRIBUTE},
            values={":done": OPERATION_DONE, ":expires": _expiry_from_now()},
        )
        return True

    # --- helpers ------------------------------------------------------------------------------------

    def _row_action(self, row: RowWrite) -> dict[str, Any]:
        return self._table.update_action(
            row.pk,
            row.sk,
            update="SET #data = :data, #version = :next REMOVE #staged, #by",
            condition="#version = :expected",
            names={"#data": "data", "#version": "version", "#staged": STAGED_DATA, "#by": STAGED_BY},
            values={":data": row.data, ":next": row.expected_version + 1, ":expected": row.expected_version},
        )

    def _start(self, pk: str, operation_id: str, now: datetime) -> None:
        """Claim the operation: nobody else may stage under its id at the same time. A claim left by
        a writer that died (older than any function runs) may be taken over."""
        try:
            self._table.put(
                # No expiry while it may be committed: rows still carrying its staged copies are read
                # through it, and without it a reader would fall back to their old data.
                {
                    PARTITION_KEY: pk,
                    SORT_KEY: merge_operation_sk(operation_id),
                    "state": OPERATION_STAGING,
                    "started_at": now.isoformat(),
                },
                condition="attribute_not_exists(pk) OR #state = :aborted OR (#state = :staging AND started_at < :stale)",
                names={"#state": "state"},
                values={
                    ":aborted": OPERATION_ABORTED,
                    ":staging": OPERATION_STAGING,
                    ":stale": (now - ABANDONED_AFTER).isoformat(),
                },
            )
        except ConditionFailed as error:
            raise StaleRows("this merge is being written by another request") from error

    def _stage(self, row: RowWrite, operation_id: str) -> None:
        self._table.update(
            row.pk,
            row.sk,
            update="SET #staged = :data, #by = :operation",
            condition="#version = :expected",
            names={"#staged": STAGED_DATA, "#by": STAGED_BY, "#version": "version"},
            values={":data": row.data, ":operation": operation_id, ":expected": row.expected_version},
        )

    def _flip_action(self, pk: str, operation_id: str) -> dict[str, Any]:
        return self._table.update_action(
            pk,
            merge_operation_sk(operation_id),
            update="SET #state = :committed",
            condition="#state = :staging",
            names={"#state": "state"},
            values={":committed": OPERATION_COMMITTED, ":staging": OPERATION_STAGING},
        )

    def _abandon(self, pk: str, operation_id: str, rows: Sequence[RowWrite]) -> None:
        """The write did not commit: mark it aborted (readers already ignore its staged copies) and
        remove the copies it left, as far as they are still ours."""
        self._table.update(
            pk,
            merge_operation_sk(operation_id),
            update="SET #state = :aborted, #expires = :expires",
            names={"#state": "state", "#expires": TTL_ATTRIBUTE},
            values={":aborted": OPERATION_ABORTED, ":expires": _expiry_from_now()},
        )
        for row in rows:
            try:
                self._table.update(
                    row.pk,
                    row.sk,
                    update="REMOVE #staged, #by",
                    condition="#by = :operation",
                    names={"#staged": STAGED_DATA, "#by": STAGED_BY},
                    values={":operation": operation_id},
                )
            except ConditionFailed:
                continue  # never staged, or someone else's by now


def _expiry_from_now() -> int:
    # Wall-clock time on purpose: DynamoDB's TTL sweeper runs on it, whatever clock the service uses.
    return int((datetime.now(UTC) + RETENTION).timestamp())
