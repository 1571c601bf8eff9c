"""The soak at full size: 1,000 leads and 300 voice samples through the local stack, every webhook
delivered three times, a share of tasks and events twice, HubSpot, Gmail, Vertex AI and Postgres
failing on a seeded schedule (tests/reliability/soak.py). `make soak` runs it alone.

The figures are counts that must be zero (duplicates, leads without a terminal state, failures
without a cause) plus how long the run took; SOAK_LEADS and SOAK_SAMPLES change N.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from tests.reliability.soak import lead_soak, sample_soak

KEYS = ("all_terminal", "seconds_to_terminal", "seconds_total", "states", "duplicate_emails_in_outbox",
        "mailer_repeat_deliveries", "mail_failed_after_storing", "hubspot_repeat_creates",
        "hubspot_rows_not_one_task_one_note", "failed_without_cause", "after_effect_without_send_error",
        "faults_injected", "db_connections_cut", "tasks_duplicated", "events_duplicated")


def run() -> dict:
    leads = int(os.environ.get("SOAK_LEADS", "1000"))
    samples = int(os.environ.get("SOAK_SAMPLES", "300"))
    with tempfile.TemporaryDirectory(prefix="soak-") as root:
        lead_figures = lead_soak(Path(root) / "leads", n=leads, timeout=1800)
        sample_figures = sample_soak(Path(root) / "samples", n=samples, timeout=1800)
    out = {"leads": {"n": leads, **{k: lead_figures[k] for k in KEYS}},
           "samples": {k: sample_figures[k] for k in sample_figures if k != "failed_errors"}}
    out["leads"]["stuck"] = len(lead_figures["stuck"])
    return out


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=1, default=str))
