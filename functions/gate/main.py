"""Pub/Sub `draft-created` → the gate (shared.gate.step): SEND, DRAFT or BLOCK, then a scheduled `send` task.

Answers: 2xx when the event is handled or can never be (a permanent problem is recorded on the workflow
by the step, or the event names no workflow); 401/403 for a caller without the push subscription's
token; 503 for a retryable problem (Gmail's breaker open, a store down), so Pub/Sub redelivers with
backoff. Anything else is a bug: the 500 is logged and the event redelivered.
"""

import base64
import binascii
import datetime as dt
import json
import logging

import flask
import functions_framework

from shared.bootstrap import container
from shared.errors import BadRequest, PermanentError, RetryableError
from shared.gate.step import gate_step
from shared.logs import bind_request
from shared.web import caller, error_response

log = logging.getLogger(__name__)


@functions_framework.cloud_event
def gate(cloud_event):
    with bind_request(flask.request.headers, container().settings.project_id):
        try:
            caller(flask.request, "gate", via="pubsub")
            gate_step(container(), workflow_id_of(cloud_event.data), now=dt.datetime.now(dt.timezone.utc))
        except PermanentError as exc:
            if exc.status in (401, 403):
                flask.abort(error_response(exc))
            log.warning("gate event dropped", extra={"fields": {"error": exc.code}})
        except RetryableError as exc:
            flask.abort(error_response(exc))


def workflow_id_of(data) -> str:
    """The workflow id in a Pub/Sub message (``{"message": {"data": base64 JSON}}``)."""
    try:
        payload = json.loads(base64.b64decode(data["message"]["data"], validate=True))
        workflow_id = payload["workflow_id"]
    except (TypeError, KeyError, ValueError, binascii.Error) as exc:
        raise BadRequest("The event is not a draft-created message with a workflow_id.") from exc
    if not isinstance(workflow_id, str) or not workflow_id:
        raise BadRequest("The event's workflow_id must be a non-empty string.")
    return workflow_id
