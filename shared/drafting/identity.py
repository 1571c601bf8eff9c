"""Who a lead is, which company they are with, and which rep owns them.

``IdentityResolver.resolve`` reads the CRM (``LeadDirectory``) and the ``reps`` table:

* the contact: by the workflow's HubSpot contact id, else (or when that record is gone) by the lead's
  email -- the same person by email;
* the company: the contact's associated company, else the company whose domain is the email's domain
  (never for free-mail domains, where the domain says nothing about the employer);
* the rep: the contact's ``hubspot_owner_id`` → the owner's email matched to ``reps.email``, falling back
  to ``reps.hubspot_owner_id`` (an owner whose HubSpot login differs from their Google address, or an
  owner HubSpot no longer lists).

The lead's words come from the form submission when it carried them (a workflow webhook), else from the
contact's ``message`` property.
"""

from __future__ import annotations

import dataclasses
import logging
import zoneinfo
from collections.abc import Mapping, Sequence
from typing import Any

from shared.drafting import LeadDirectory
from shared.errors import NotFound
from shared.ports import Database

log = logging.getLogger(__name__)

# Domains of mailbox providers: a lead writing from one says nothing about their company.
FREE_MAIL = frozenset({
    "gmail.com", "googlemail.com", "outlook.com", "hotmail.com", "live.com", "msn.com", "yahoo.com", "ymail.com",
    "icloud.com", "me.com", "mac.com", "aol.com", "proton.me", "protonmail.com", "gmx.com", "gmx.de", "web.de",
    "mail.com", "zoho.com", "yandex.com", "yandex.ru", "qq.com", "163.com", "fastmail.com", "hey.com",
})
MESSAGE_FIELDS = ("message", "comments", "how_can_we_help", "what_can_we_help_you_with")
TRUE_VALUES = frozenset({"true", "1", "yes"})


@dataclasses.dataclass(frozen=True)
class Identity:
    """The resolved lead.

    Attributes:
        lead: ``{"email", "first_name", "last_name", "message", "time_zone", "opted_out", "contact_id"}``.
        company: ``{"name", "domain", "lifecycle_stage", "industry", "employees"}`` (values may be None).
        rep: The ``reps`` row (``id``, ``email``, ``display_name``, ``time_zone``, ``google_connected_at``),
            or None when no rep owns the lead.
        owner_id: The contact's HubSpot owner id, or None.
        why_no_rep: When ``rep`` is None, a sentence for the timeline saying what was looked for.
    """

    lead: dict[str, Any]
    company: dict[str, Any]
    rep: dict[str, Any] | None
    owner_id: str | None
    why_no_rep: str = ""


class IdentityResolver:
    """Resolves leads against a CRM and the ``reps`` table.

    Args:
        crm: The CRM reads.
        db: The database (``reps``).
        optout_properties: Extra contact properties that mean "do not email" when true, such as the
            account's one-to-one ``hs_email_optout_<subscription id>``.
    """

    def __init__(self, crm: LeadDirectory, db: Database, *, optout_properties: Sequence[str] = ()):
        self.crm = crm
        self.db = db
        self.optout_properties = tuple(optout_properties)

    def resolve(self, *, contact_id: str | None, email: str | None,
                submitted: Mapping[str, Any] | None = None) -> Identity:
        """Resolve one lead.

        Args:
            contact_id: The HubSpot contact id the submission named, if any.
            email: The email the submission carried, if any.
            submitted: The form's properties from the submission (flat ``name → value``), if any.

        Raises:
            RateLimited / DependencyDown: the CRM is limiting or down.
        """
        submitted = dict(submitted or {})
        contact = self._contact(contact_id, email)
        props = dict(contact["properties"]) if contact else {}
        lead_email = str(props.get("email") or email or submitted.get("email") or "").strip().lower() or None
        company = self._company(contact["id"] if contact else None, lead_email)
        owner_id = str(props.get("hubspot_owner_id") or "").strip() or None
        rep, why = self._rep(owner_id)
        lead = {
            "email": lead_email,
            "first_name": _text(submitted.get("firstname")) or _text(props.get("firstname")),
            "last_name": _text(submitted.get("lastname")) or _text(props.get("lastname")),
            "message": _message(submitted) or _message(props),
            "time_zone": hubspot_time_zone(props.get("hs_timezone")),
            "opted_out": self._opted_out(props),
            "contact_id": contact["id"] if contact else (str(contact_id) if contact_id else None),
        }
        return Identity(lead=lead, company=company, rep=rep, owner_id=owner_id, why_no_rep=why)

    def _contact(self, contact_id: str | None, email: str | None) -> dict[str, Any] | None:
        if contact_id and str(contact_id).isdigit():
            try:
                return self.crm.contact(str(contact_id), self.optout_properties)
            except NotFound:
                pass  # merged or deleted since the form fill: the same person may be found by email
        if email:
            return self.crm.find_contact_by_email(email, self.optout_properties)
        return None

    def _company(self, contact_id: str | None, email: str | None) -> dict[str, Any]:
        found = self.crm.company_of_contact(contact_id) if contact_id else None
        domain = email.rsplit("@", 1)[-1] if email and "@" in email else None
        if found is None and domain and domain not in FREE_MAIL:
            found = self.crm.find_company_by_domain(domain)
        p = found["properties"] if found else {}
        return {"name": _text(p.get("name")), "domain": _text(p.get("domain")),
                "lifecycle_stage": _text(p.get("lifecyclestage")), "industry": _text(p.get("industry")),
                "employees": _int(p.get("numberofemployees"))}

    def _rep(self, owner_id: str | None) -> tuple[dict[str, Any] | None, str]:
        if not owner_id:
            return None, "The contact has no owner in HubSpot."
        owner = self.crm.owner(owner_id)
        columns = "id::text AS id, email, display_name, time_zone, google_connected_at, google_status"
        if owner and owner.get("email"):
            rows = self.db.query(f"SELECT {columns} FROM reps WHERE email = %s", (owner["email"].lower(),))
            if rows:
                return rows[0], ""
        rows = self.db.query(f"SELECT {columns} FROM reps WHERE hubspot_owner_id = %s", (owner_id,))
        if rows:
            return rows[0], ""
        known = "is not a HubSpot owner any more" if owner is None else "matches no rep's email"
        return None, (f"HubSpot owner {owner_id} {known}, and no rep has that HubSpot owner id. Add the owner "
                      "as a rep (or set the rep's HubSpot owner id), then retry the lead.")

    def _opted_out(self, props: Mapping[str, Any]) -> bool:
        names = ("hs_email_optout", *self.optout_properties)
        return any(str(props.get(name) or "").strip().lower() in TRUE_VALUES for name in names)


def hubspot_time_zone(value: Any) -> str | None:
    """An IANA zone from HubSpot's ``hs_timezone`` (``america_slash_new_york`` → ``America/New_York``).

    Returns None for an empty or unknown value.
    """
    text = str(value or "").strip()
    if not text:
        return None
    candidates = [text]
    if "_slash_" in text or text.islower():
        parts = text.replace("_slash_", "/").split("/")
        candidates.append("/".join("_".join(w.capitalize() for w in p.split("_")) for p in parts))
    available = zoneinfo.available_timezones()
    for candidate in candidates:
        if candidate in available:
            return candidate
    lowered = {z.lower(): z for z in available}
    return lowered.get(candidates[-1].lower())


def _message(props: Mapping[str, Any]) -> str | None:
    for name in MESSAGE_FIELDS:
        text = _text(props.get(name))
        if text:
            return text[:5000]
    return None


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, (dict, list)):
        return None
    text = str(value).strip()
    return text or None


def _int(value: Any) -> int | None:
    try:
        return int(float(str(value).replace(",", "")))
    except (TypeError, ValueError):
        return None
