"""Licensed add-ons that must use the same ledger as the bookkeeping connection."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from ledgerlink.models.common import ProviderName


class Feature(StrEnum):
    DATA_HEALTH = "data_health"
    COMMERCE = "commerce"


FEATURE_NAMES = {Feature.DATA_HEALTH: "Data Health & Insights", Feature.COMMERCE: "Commerce"}


class Licence(BaseModel):
    model_config = ConfigDict(frozen=True)

    feature: Feature
    provider: ProviderName  # the ledger the add-on works with
    assigned_at: datetime
    assigned_by: str
