"""The Google ports of this package, for a container that does not build them itself yet.

``shared.bootstrap.Container`` builds every adapter; until it has ``google_account`` and ``calendar``
ports, the edges of this package (the routes, the draft step's call) get them here: the container's own
attribute when it has one, else one adapter per container built from its settings and secret store,
kept for the life of the instance (so access tokens are cached per instance).
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

from shared.errors import Refused

_lock = threading.Lock()
_built: weakref.WeakKeyDictionary[Any, dict[str, Any]] = weakref.WeakKeyDictionary()

NOT_CONFIGURED = ("Google accounts cannot be connected here: set GOOGLE_OAUTH_CLIENT_SECRET (see "
                  "docs/google-workspace.md).")


def _cached(deps: Any, name: str, build) -> Any:
    own = getattr(deps, name, None)
    if own is not None:
        return own
    with _lock:
        ports = _built.setdefault(deps, {})
        if name not in ports:
            ports[name] = build()
        return ports[name]


def google_account(deps: Any) -> Any:
    """The ``GoogleAccount`` port of ``deps``.

    Raises:
        Refused: No OAuth client secret is configured (the embedded stack), so there is no Google to call.
    """
    def build():
        if not deps.settings.oauth_client_secret:
            raise Refused(NOT_CONFIGURED, code="google_not_configured")
        from shared.adapters.gmail_sync import build_google_account_api

        return build_google_account_api(deps.settings, deps.secrets)

    return _cached(deps, "google_account", build)


def calendar(deps: Any) -> Any:
    """The ``Calendar`` port of ``deps`` (shares the rep sessions of ``google_account``)."""
    def build():
        from shared.adapters.google_calendar import GoogleCalendar

        return GoogleCalendar(google_account(deps))

    return _cached(deps, "calendar", build)


def install(deps: Any, *, google: Any = None, calendar_port: Any = None) -> None:
    """Use these ports for ``deps`` (tests, and the local stack pointed at stand-ins)."""
    with _lock:
        ports = _built.setdefault(deps, {})
        if google is not None:
            ports["google_account"] = google
        if calendar_port is not None:
            ports["calendar"] = calendar_port
