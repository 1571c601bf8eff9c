"""Mail: the last hop of a workflow, a follow-up sent from the rep's Gmail or left there as a draft.

- ``message``: the RFC 5322 message with a Message-ID derived from the workflow (the exactly-once key).
- ``ports``: the ``Mailer`` port (Gmail in production, an outbox of ``.eml`` files locally) and its errors.
- ``send_step``: the ``send`` function's capability: kill switch, exactly-once send, HubSpot task + note.
"""
