"""Licensed add-ons (Data Health & Insights, Commerce) must use the ledger the business's
bookkeeping connection uses: refused both ways, with the ledger that is required named."""

from __future__ import annotations

from ledgerlink.api.auth import Caller, require_admin
from ledgerlink.api.schemas import LicenceAssignment, LicencesView
from ledgerlink.clock import Clock
from ledgerlink.errors import Conflict, ResourceNotFound
from ledgerlink.models.common import ProviderName
from ledgerlink.models.licences import FEATURE_NAMES, Feature, Licence
from ledgerlink.providers import registry
from ledgerlink.storage.connections import ConnectionRepository
from ledgerlink.storage.licences import LicenceRepository


class LicenceLedgerMismatch(Conflict):
    code = "licence_ledger_mismatch"


def _ledger_name(provider: ProviderName) -> str:
    try:
        return registry.capabilities(provider).display_name
    except Exception:  # a ledger not supported yet still has a name worth showing
        return provider.value


class LicenceService:
    def __init__(self, *, licences: LicenceRepository, connections: ConnectionRepository, clock: Clock):
        self._licences = licences
        self._connections = connections
        self._clock = clock

    def view(self, caller: Caller) -> LicencesView:
        return LicencesView(licences=self._licences.all(caller.business_id))

    def assign(self, caller: Caller, feature_name: str, request: LicenceAssignment) -> Licence:
        require_admin(caller, "assign licences")
        feature = _feature(feature_name)
        connection = self._connections.get(caller.business_id)
        if connection is not None and connection.provider != request.provider:
            raise LicenceLedgerMismatch(
                f"{FEATURE_NAMES[feature]} must use the ledger this business is connected to: "
                f"{_ledger_name(connection.provider)}, not {_ledger_name(request.provider)}",
                field="provider",
            )
        licence = Licence(
            feature=feature,
            provider=request.provider,
            assigned_at=self._clock.now(),
            assigned_by=caller.user_id,
        )
        self._licences.put(caller.business_id, licence)
        return licence

    def unassign(self, caller: Caller, feature_name: str) -> LicencesView:
        require_admin(caller, "unassign licences")
        self._licences.remove(caller.business_id, _feature(feature_name))
        return self.view(caller)

    def check_ledger_allowed(self, business_id: str, provider: ProviderName) -> None:
        """Connecting to ``provider`` must not strand an add-on licensed for another ledger."""
        for licence in self._licences.all(business_id):
            if licence.provider != provider:
                raise LicenceLedgerMismatch(
                    f"{FEATURE_NAMES[licence.feature]} is licensed for {_ledger_name(licence.provider)}: "
                    f"connect {_ledger_name(licence.provider)}, or unassign the licence first",
                    field="provider",
                )


def _feature(name: str) -> Feature:
    try:
        return Feature(name)
    except ValueError:
        valid = ", ".join(f.value for f in Feature)
        raise ResourceNotFound(f"there is no licensed feature {name!r}; the features are: {valid}") from None
