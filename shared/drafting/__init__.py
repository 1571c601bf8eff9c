"""Drafting: a RECEIVED lead → its rep, company and the rep's own material → a subject and body in the rep's voice.

Modules:

* ``identity`` -- who the lead is, which company, which rep (``IdentityResolver`` over ``LeadDirectory``);
* ``prompt`` -- the generation prompt, with every piece of lead and sample text fenced as untrusted data;
* ``generate`` -- the ``TextGenerator`` port and its result;
* ``step`` -- ``draft_step``, the Cloud Task ``draft``.

The CRM ports the draft and send steps depend on live here; ``shared.adapters.hubspot_crm`` implements
both on HubSpot and on the sandbox CRM.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class LeadDirectory(Protocol):
    """The CRM reads that identify a lead, its company and its owner.

    Records are ``{"id": str, "properties": {HubSpot property name: value}}`` with empty values left out.
    Every method raises ``RateLimited`` / ``DependencyDown`` for the CRM's limits and outages.
    """

    def contact(self, contact_id: str, extra_properties: Sequence[str] = ()) -> dict[str, Any]:
        """The contact. Raises NotFound (deleted or merged) or BadRequest (not an id)."""
        ...

    def find_contact_by_email(self, email: str, extra_properties: Sequence[str] = ()) -> dict[str, Any] | None: ...

    def company_of_contact(self, contact_id: str) -> dict[str, Any] | None: ...

    def find_company_by_domain(self, domain: str) -> dict[str, Any] | None: ...

    def owner(self, owner_id: str) -> dict[str, Any] | None:
        """``{"id", "email", "first_name", "last_name"}`` or None when the CRM has no such owner."""
        ...


@runtime_checkable
class CrmWriter(Protocol):
    """The CRM writes of the send step: a follow-up task for the rep and a note on the contact.

    The CRM may not deduplicate (HubSpot does not): callers keep their own exactly-once record, keyed by
    the same ``idempotency_key``, and check it before writing.
    """

    def create_task(self, contact_id: str, owner_id: str | None, subject: str, body: str, due_at: dt.datetime,
                    idempotency_key: str) -> str: ...

    def create_note(self, contact_id: str, body_html: str, timestamp: dt.datetime, idempotency_key: str) -> str: ...

    def find_by_idempotency_key(self, idempotency_key: str) -> str | None:
        """The id a write with this key created when the CRM can tell; None means "unknown"."""
        ...
