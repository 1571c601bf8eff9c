"""The `webhook` function's routes: HubSpot deliveries (and, later, Gmail push)."""

from __future__ import annotations

from flask import Request

from shared.auth import hubspot_request_uri, verify_hubspot
from shared.bootstrap import container
from shared.errors import TooLarge
from shared.leads import intake
from shared.web import Router

router = Router("webhook")

# HubSpot sends at most 100 events per request; a megabyte is far above that and bounds the read.
MAX_BODY_BYTES = 1024 * 1024


@router.route("POST", "/hubspot")
def hubspot(request: Request):
    c = container()
    s = c.settings
    if (request.content_length or 0) > MAX_BODY_BYTES:
        raise TooLarge(f"A HubSpot delivery may be at most {MAX_BODY_BYTES} bytes.")
    body = request.get_data(cache=True)
    if len(body) > MAX_BODY_BYTES:
        raise TooLarge(f"A HubSpot delivery may be at most {MAX_BODY_BYTES} bytes.")
    # The signed URI is the public one HubSpot called, not whatever host the platform saw.
    uri = hubspot_request_uri(s.public_base_url, "/webhook/hubspot", request.query_string)
    verify_hubspot(request.headers, secret=s.hubspot_client_secret, method=request.method, uri=uri, body=body)
    return intake.accept(c.db, c.tasks, intake.parse(body)).to_json()


# Gmail push (`POST /gmail`) registers itself on this router.
from shared.accounts_google import webhook_gmail  # noqa: E402,F401
