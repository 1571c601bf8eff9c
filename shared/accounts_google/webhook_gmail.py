"""``POST /webhook/gmail``: Gmail push notifications delivered by a Pub/Sub push subscription.

The subscription attaches an OIDC token of ``PUBSUB_SERVICE_ACCOUNT`` for the webhook's audience
(https://cloud.google.com/pubsub/docs/authenticate-push-subscriptions). A handled or ignored
notification is answered 200 (acknowledged); a retryable failure 503, so Pub/Sub redelivers with backoff.
"""

from __future__ import annotations

from flask import Request

from shared.errors import TooLarge
from shared.leads.webhook_api import router
from shared.web import caller, json_body

# A push body is the notification (under 1 KB) in Pub/Sub's envelope.
MAX_BODY_BYTES = 64 * 1024


@router.route("POST", "/gmail", delivery=True)
def gmail(request: Request):
    from shared.accounts_google import gmail_push, wiring
    from shared.bootstrap import container

    caller(request, "webhook", via="pubsub")
    if (request.content_length or 0) > MAX_BODY_BYTES:
        raise TooLarge(f"A push delivery may be at most {MAX_BODY_BYTES} bytes.")
    deps = container()
    return gmail_push.handle(deps, wiring.google_account(deps), json_body(request))
