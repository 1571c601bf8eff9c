"""Cloud Task `send`: the gated email sent from the rep's Gmail or saved as a draft, exactly once, then a
HubSpot task and note (shared.mail.send_step).

Answers 200 when the workflow is finished or can never be (a permanent problem is recorded on it), 503
while Gmail, HubSpot or a store is failing and attempts remain (Cloud Tasks retries with backoff), and
401/403 for a caller without the send queue's OIDC token.
"""

import functions_framework

from shared.mail.send_step import send_router


@functions_framework.http
def send(request):
    return send_router.dispatch(request)
