"""Reps: who may train a voice, and whose voice a request is about.

A rep is a row in ``reps``, created the first time a person from an allowed domain signs in
(DESIGN §4). Ops are people with the ops role; they are not reps unless their domain is allowed too,
and they may act on any rep's voice by naming its ``rep_id``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from shared.errors import Forbidden, NotFound
from shared.ports import Database

_COLUMNS = "id, email, display_name, hubspot_owner_id, time_zone, google_status, created_at"


def _domain(email: str) -> str:
    return email.rsplit("@", 1)[-1].lower()


def _row(row: dict[str, Any] | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {**row, "id": str(row["id"])}


def _name_from_email(email: str) -> str:
    local = email.split("@", 1)[0]
    return " ".join(part.capitalize() for part in local.replace("_", ".").replace("-", ".").split(".") if part)


def ensure_rep(db: Database, principal: Any, allowed_domains: Iterable[str]) -> dict[str, Any] | None:
    """The rep row of a signed-in person, created on their first sign-in from an allowed domain.

    Args:
        db: The database.
        principal: The authenticated person (``shared.auth.Principal``).
        allowed_domains: Domains whose people are reps.

    Returns:
        The rep as a dict (``id`` as a string), or None for a person who is not a rep (ops from
        another domain).
    """
    email = principal.email.strip().lower()
    if _domain(email) not in {d.lower() for d in allowed_domains}:
        return rep_by_email(db, email)
    rows = db.query(
        f"""INSERT INTO reps (email, display_name) VALUES (%s, %s)
            ON CONFLICT (email) DO UPDATE SET email = EXCLUDED.email
            RETURNING {_COLUMNS}""", (email, _name_from_email(email)))
    return _row(rows[0])


def get_rep(db: Database, rep_id: str) -> dict[str, Any] | None:
    """A rep by id, or None (also for a malformed id).

    Args:
        db: The database.
        rep_id: The rep's uuid.
    """
    try:
        uuid.UUID(str(rep_id))
    except ValueError:
        return None
    rows = db.query(f"SELECT {_COLUMNS} FROM reps WHERE id = %s", (str(rep_id),))
    return _row(rows[0] if rows else None)


def rep_by_email(db: Database, email: str) -> dict[str, Any] | None:
    """A rep by email address (compared in lower case), or None.

    Args:
        db: The database.
        email: The address.
    """
    rows = db.query(f"SELECT {_COLUMNS} FROM reps WHERE email = %s", (email.strip().lower(),))
    return _row(rows[0] if rows else None)


def resolve_target_rep(db: Database, principal: Any, rep_id_param: str | None,
                       allowed_domains: Iterable[str] = ()) -> dict[str, Any]:
    """The rep a request acts on: the caller, or for ops the rep named by ``rep_id``.

    Args:
        db: The database.
        principal: The authenticated person.
        rep_id_param: The ``rep_id`` the request names, if any.
        allowed_domains: Domains whose people are reps (the caller's rep row is created if needed).

    Returns:
        The target rep.

    Raises:
        Forbidden: A non-ops caller named another rep, or the caller is not a rep and named none.
        NotFound: The named rep does not exist.
    """
    own = ensure_rep(db, principal, allowed_domains) if allowed_domains else rep_by_email(db, principal.email)
    if rep_id_param:
        if own is not None and str(rep_id_param) == own["id"]:
            return own
        if not principal.is_ops:
            raise Forbidden("Only ops may act on another rep's voice.")
        target = get_rep(db, str(rep_id_param))
        if target is None:
            raise NotFound(f"There is no rep with id {rep_id_param}.")
        return target
    if own is None:
        raise Forbidden("This account is not a rep; ops must name a rep_id.")
    return own
