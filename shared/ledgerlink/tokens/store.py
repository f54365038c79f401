"""Where a connection's tokens (or KashFlow credentials) live. One interface, pluggable back ends."""

from __future__ import annotations

from abc import ABC, abstractmethod

from ledgerlink.models.tokens import TokenSet


class TokenStoreError(RuntimeError):
    """The back end failed in a way the caller cannot fix (throttled, denied, unavailable)."""


class TokenNotFound(LookupError):
    """No token set is stored for the connection (never connected, or disconnected)."""


class TokenStore(ABC):
    name: str

    @abstractmethod
    def create(self, connection_id: str, tokens: TokenSet) -> None:
        """Store the first token set of a new connection."""

    @abstractmethod
    def read(self, connection_id: str) -> TokenSet:
        """The newest stored token set; raises TokenNotFound."""

    @abstractmethod
    def write(self, connection_id: str, tokens: TokenSet) -> None:
        """Replace the stored token set (after a refresh or a reconnect)."""

    @abstractmethod
    def delete(self, connection_id: str) -> None:
        """Forget the connection's tokens for good (disconnect)."""
