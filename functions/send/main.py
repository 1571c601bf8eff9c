"""Cloud Task `send`: the gated email sent from the rep's Gmail or saved as a draft, exactly once, then a
HubSpot task and note (shared.mail.send_step).

Answers 200 when the workflow is finished or can never be (a permanent problem is recorded on it), 503
while Gmail, HubSpot or a store is failing and attempts remain (Cloud Tasks retries with backoff), and
401/403 for a caller without the send queue's OIDC token.
"""

import functions_framework

from shared.bootstrap import container
from shared.errors import BadRequest, PermanentError
from shared.mail.send_step import send_step
from shared.web import Router, caller, error_response, json_body

router = Router("send")


@router.route("POST", "/", delivery=True)
def deliver(request):
    try:
        caller(request, "send", via="tasks")
    except PermanentError as exc:
        # Answered with its own 401/403: a delivery route would otherwise turn it into a 200.
        return error_response(exc)
    workflow_id = json_body(request).get("workflow_id")
    if not isinstance(workflow_id, str) or not workflow_id:
        raise BadRequest("workflow_id is required.")
    try:
        retries = max(0, int(request.headers.get("X-CloudTasks-TaskRetryCount", "0")))
    except ValueError:
        retries = 0
    return send_step(container(), workflow_id, attempt=retries + 1)


@functions_framework.http
def send(request):
    return router.dispatch(request)
