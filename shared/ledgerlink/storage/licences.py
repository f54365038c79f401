"""Licence assignments of a business (one item per licensed feature)."""

from __future__ import annotations

from ledgerlink.models.licences import Feature, Licence
from ledgerlink.storage.dynamo import Table
from ledgerlink.storage.schema import LICENCE_SK_PREFIX, PARTITION_KEY, SORT_KEY, business_pk, licence_sk


class LicenceRepository:
    def __init__(self, table: Table):
        self._table = table

    def all(self, business_id: str) -> list[Licence]:
        return [
            Licence.model_validate_json(raw["data"])
            for raw in self._table.query(
                business_pk(business_id), sk_prefix=LICENCE_SK_PREFIX, consistent=True
            )
        ]

    def put(self, business_id: str, licence: Licence) -> None:
        self._table.put(
            {
                PARTITION_KEY: business_pk(business_id),
                SORT_KEY: licence_sk(licence.feature),
                "data": licence.model_dump_json(),
            }
        )

    def remove(self, business_id: str, feature: Feature) -> None:
        self._table.delete(business_pk(business_id), licence_sk(feature))
