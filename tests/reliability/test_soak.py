"""The soak on the local stack: leads and samples under duplicated deliveries and injected faults.

Loses nothing: every lead and every sample reaches a terminal state within a bounded time, and each
failure carries its cause. Duplicates nothing: one email per workflow in the outbox and at the mailer,
one HubSpot task and one note per delivered workflow, no chunk stored twice. The figures are returned
by tests/reliability/soak.py; `make soak` (bench/bench_soak.py) runs the same at 1,000 leads and 300
samples. N here is small so `make test` stays quick; SOAK_LEADS and SOAK_SAMPLES raise it.
"""

from __future__ import annotations

import os

import pytest

from tests.reliability.soak import lead_soak, sample_soak

pytestmark = [pytest.mark.emulator, pytest.mark.slow]

LEADS = int(os.environ.get("SOAK_LEADS", "60"))
SAMPLES = int(os.environ.get("SOAK_SAMPLES", "30"))


@pytest.fixture(scope="module")
def leads(tmp_path_factory):
    return lead_soak(tmp_path_factory.mktemp("soak-leads"), n=LEADS, timeout=300)


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    return sample_soak(tmp_path_factory.mktemp("soak-samples"), n=SAMPLES, timeout=300)


def test_every_lead_reaches_a_terminal_state(leads):
    assert leads["all_terminal"], leads["stuck"]
    assert leads["workflows"] == leads["submissions"] == LEADS, leads
    # Three deliveries of each lead: one accepted, two recognised as duplicates.
    assert (leads["accepted"], leads["duplicates"]) == (LEADS, 2 * LEADS)


def test_the_faults_really_happened(leads):
    injected = leads["faults_injected"]
    for point in ("crm", "mail", "generate", "db_drop", "dup_task", "dup_event"):
        assert injected.get(point, 0) > 0, f"no {point} fault was injected: {injected}"
    assert leads["mail_failed_after_storing"] > 0


def test_no_email_is_sent_twice(leads):
    assert leads["duplicate_emails_in_outbox"] == 0
    assert leads["mailer_repeat_deliveries"] == 0, "a retry handed an already stored message to the mailbox again"
    assert leads["delivered_workflows_without_email"] == leads["emails_without_delivered_workflow"] == 0
    assert leads["emails_in_outbox"] == leads["states"].get("SENT", 0) + leads["states"].get("DRAFT_SAVED", 0)


def test_no_hubspot_task_or_note_is_created_twice(leads):
    assert leads["hubspot_repeat_creates"] == 0
    assert leads["hubspot_rows_not_one_task_one_note"] == 0
    assert leads["sandbox_task_and_note_keys"] == leads["hubspot_creates"]


def test_every_failure_is_recorded_with_its_cause(leads):
    assert leads["failed_without_cause"] == 0
    assert leads["failed_blank_reason"] == 0
    assert leads["after_effect_without_send_error"] == 0
    assert all(row["blank"] == 0 for row in leads["workflow_errors"])
    retried = sum(row["n"] for row in leads["workflow_errors"] if row["retryable"])
    assert retried > 0, leads["workflow_errors"]


def test_every_sample_ends_ready_or_failed_with_a_readable_error(samples):
    assert samples["all_finished"], samples
    assert sum(samples["statuses"].values()) == SAMPLES
    assert set(samples["statuses"]) <= {"ready", "failed"}
    assert samples["failed_without_error"] == 0
    for error in samples["failed_errors"]:
        assert len(error) > 15 and "Traceback" not in error


def test_no_chunk_is_stored_twice(samples):
    assert samples["faults_injected"].get("embed", 0) > 0 and samples["faults_injected"].get("blob_get", 0) > 0
    assert samples["tasks_duplicated"] > 0
    assert samples["duplicate_chunks"] == 0
    assert samples["ready_without_chunks"] == 0
