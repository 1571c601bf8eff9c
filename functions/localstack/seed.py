"""Demo data for the local stack, applied on every start and changing nothing once present.

Two reps, flags in DRAFT_ONLY with the kill switch off, and guardrails describing a typical ICP.
"""

from __future__ import annotations

import datetime as dt
import logging

from shared import flags
from shared.bootstrap import Container

log = logging.getLogger(__name__)

REPS = (
    ("alex@example.com", "Alex Rivera", "America/New_York", "1001"),
    ("sam@example.com", "Sam Okafor", "Europe/London", "1002"),
)

GUARDRAILS = {
    "allowed_company_stages": ["lead", "marketingqualifiedlead", "salesqualifiedlead", "opportunity"],
    "allowed_industries": [],
    "employee_min": 5,
    "employee_max": 5000,
}


def seed(container: Container) -> None:
    """Create what the demo needs, once; later starts leave ops' changes alone."""
    now = dt.datetime.now(dt.timezone.utc)
    with container.db.transaction() as cur:
        for email, name, zone, owner in REPS:
            cur.execute(
                """INSERT INTO reps (email, display_name, time_zone, hubspot_owner_id)
                   VALUES (%s, %s, %s, %s) ON CONFLICT (email) DO NOTHING""", (email, name, zone, owner))
    store = container.store
    # Written out in full even though they equal the defaults: ops edit this document in the console.
    store.create(flags.FLAGS, flags.GLOBAL_DOC, {"send_mode": flags.DRAFT_ONLY, "kill_switch": False,
                                                 "updated_by": "seed", "updated_at": now})
    if store.get(flags.GUARDRAILS, flags.GLOBAL_DOC) is None:
        flags.set_guardrails(store, GUARDRAILS, "seed", now)
    from functions.localstack.seed_voice import seed_samples

    seed_samples(container)
    log.info("demo data in place", extra={"fields": {"reps": len(REPS)}})
