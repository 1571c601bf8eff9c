"""Pub/Sub `draft-created` → the gate (shared.gate.step): SEND, DRAFT or BLOCK, then a scheduled `send` task.

Answers: 2xx when the event is handled or can never be (a permanent problem is recorded on the workflow
by the step, or the event names no workflow); 401/403 for a caller without the push subscription's
token; 503 for a retryable problem (Gmail's breaker open, a store down), so Pub/Sub redelivers with
backoff. Anything else is a bug: the 500 is logged and the event redelivered.
"""

import flask
import functions_framework

from shared.gate.step import handle_event


@functions_framework.cloud_event
def gate(cloud_event):
    handle_event(cloud_event.data, flask.request)
