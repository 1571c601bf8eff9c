"""The ``token-refresh`` function's routes: the connect flow (``/connect``, ``/callback``), the rep's
connection for the voice-training page (``GET /status``, ``POST /disconnect``) and the scheduled run
(``POST /``)."""

from __future__ import annotations

import datetime as dt
import html
import logging
import urllib.parse

from flask import Request, Response

from shared.accounts_google import connection, oauth, refresh, wiring
from shared.errors import AppError, NotFound
from shared.web import BrowserRouter, caller, person

log = logging.getLogger(__name__)

# The voice-training page reads and ends the connection from its own origin: CORS as for ingest.
router = BrowserRouter("token-refresh")


def _deps():
    from shared.bootstrap import container

    return container()


def _page(title: str, message: str, status: int) -> Response:
    body = (f"<!doctype html><html lang=en><meta charset=utf-8><title>{html.escape(title)}</title>"
            f"<body style='font-family:system-ui;max-width:36em;margin:4em auto'><h1>{html.escape(title)}</h1>"
            f"<p>{html.escape(message)}</p></body></html>")
    # The page follows a redirect from Google: it must not be cached or leak the code in a Referer.
    return Response(body, status=status, mimetype="text/html",
                    headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})


@router.route("GET", "/connect")
def connect(request: Request):
    """Start connecting a Google account: the signed-in rep's, or ``?rep=<id>`` (a reconnect link).

    A reconnect link needs no sign-in: the callback accepts only the Google account whose address is
    the rep's, so following someone else's link cannot attach another mailbox to them.
    """
    from shared import accounts

    deps = _deps()
    wiring.google_account(deps)  # refuses early when no OAuth client is configured
    rep_id = request.args.get("rep")
    if rep_id:
        rep = accounts.get_rep(deps.db, rep_id)
        if rep is None:
            raise NotFound("There is no such rep.")
    else:
        rep = accounts.resolve_target_rep(deps.db, person(request), None, deps.settings.allowed_domains)
    url = oauth.start(deps, rep)
    if request.args.get("format") == "json" or request.accept_mimetypes.best == "application/json":
        # For pages that call the API with a bearer token and then navigate themselves.
        return {"authorization_url": url}
    return Response(status=302, headers={"Location": url, "Cache-Control": "no-store"})


@router.route("GET", "/callback")
def callback(request: Request):
    deps = _deps()
    try:
        result = oauth.finish(deps, wiring.google_account(deps), code=request.args.get("code"),
                              state=request.args.get("state"), error=request.args.get("error"))
    except AppError as exc:
        return _page("Google account not connected", exc.message, exc.status)
    target = getattr(deps.settings, "google_connected_redirect", "") or ""
    if target:
        query = urllib.parse.urlencode({"google": "connected"})
        return Response(status=302, headers={"Location": target + ("&" if "?" in target else "?") + query})
    missing = result["missing_scopes"]
    note = (" Some permissions were not granted, so email cannot be sent from it yet: connect again and keep "
            "every box ticked." if missing else " You can close this page.")
    return _page("Google account connected", f"{result['email']} is connected.{note}", 200)


def _target(deps, request: Request, principal) -> dict:
    from shared import accounts

    return accounts.resolve_target_rep(deps.db, principal, request.args.get("rep_id"), deps.settings.allowed_domains)


@router.route("GET", "/status")
def get_status(request: Request):
    """The signed-in rep's Google connection (ops: ``?rep_id=``) and the link that (re)connects it."""
    deps = _deps()
    rep = _target(deps, request, person(request))
    connect_url = deps.settings.function_url("token-refresh") + "/connect?" + urllib.parse.urlencode(
        {"rep": str(rep["id"])})
    return {**connection.status(connection.load(deps.db, rep["id"])), "connect_url": connect_url}


@router.route("POST", "/disconnect")
def disconnect(request: Request):
    """Stop the watch, revoke the grant, delete the token, mark the rep disconnected (idempotent)."""
    deps = _deps()
    principal = person(request)
    rep = _target(deps, request, principal)
    google = wiring.google_account(deps) if deps.settings.oauth_client_secret else None
    return connection.disconnect(deps, google, rep, actor=principal.email)


@router.route("POST", "")
def scheduled(request: Request):
    caller(request, "token-refresh", via="scheduler")
    deps = _deps()
    return refresh.run(deps, wiring.google_account(deps), now=dt.datetime.now(dt.timezone.utc))
