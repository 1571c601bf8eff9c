"""The ports this package depends on; ``shared.adapters.gmail_sync`` and ``google_calendar`` implement them."""

from __future__ import annotations

import datetime as dt
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class GoogleAccount(Protocol):
    """A rep's Google account (see ``shared.adapters.gmail_sync.GoogleAccountApi`` for the semantics)."""

    def exchange_code(self, code: str, code_verifier: str, redirect_uri: str) -> Any: ...

    def refresh(self, rep_id: Any) -> Any: ...

    def store_refresh_token(self, rep_id: Any, token: str) -> None: ...

    def watch(self, rep_id: Any, topic: str) -> Any: ...

    def stop(self, rep_id: Any) -> None: ...

    def revoke(self, rep_id: Any) -> bool: ...

    def forget_refresh_token(self, rep_id: Any) -> bool: ...

    def history(self, rep_id: Any, start_history_id: int, *, max_pages: int = 10) -> Any: ...

    def recent_messages(self, rep_id: Any, *, days: int = 7, limit: int = 500) -> list[str]: ...

    def message(self, rep_id: Any, message_id: str) -> Any: ...


@runtime_checkable
class Calendar(Protocol):
    def busy(self, rep_id: Any, start: dt.datetime, end: dt.datetime) -> list[tuple[dt.datetime, dt.datetime]]:
        """Busy intervals (UTC) of the rep's primary calendar."""
        ...
