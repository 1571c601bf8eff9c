"""Workflow moves on embedded Postgres: compare-and-set, timeline, racing duplicates."""

from __future__ import annotations

import threading

import pytest

from shared.leads import workflow as wf

pytestmark = pytest.mark.emulator


def _new(db) -> str:
    with db.transaction() as cur:
        cur.execute("INSERT INTO form_submissions (idempotency_key, source, payload) "
                    "VALUES ('k1', 'test', '{}') RETURNING id")
        sub = str(cur.fetchone()[0])
        return wf.create_many(cur, [(sub, "c1", "lead@acme.test")], actor="test")[sub]


def test_moves_are_recorded_in_the_timeline(db):
    workflow_id = _new(db)
    wf.transition(db, workflow_id, wf.DRAFTING, actor="draft", expect=wf.RECEIVED)
    row = wf.transition(db, workflow_id, wf.DRAFTED, actor="draft", reason="drafted in 2 s")
    assert row["state"] == wf.DRAFTED and row["version"] == 2
    wf.record_error(db, workflow_id, "draft", code="rate_limited", message="HubSpot 429", retryable=True)
    line = wf.timeline(db, workflow_id)
    assert [(e["from_state"], e["to_state"]) for e in line["events"]] == [
        (None, "RECEIVED"), ("RECEIVED", "DRAFTING"), ("DRAFTING", "DRAFTED")]
    assert line["events"][2]["reason"] == "drafted in 2 s"
    assert line["errors"][0]["code"] == "rate_limited" and line["errors"][0]["retryable"] is True


def test_illegal_and_stale_moves_change_nothing(db):
    workflow_id = _new(db)
    with pytest.raises(wf.IllegalTransition):
        wf.transition(db, workflow_id, wf.SENT, actor="send")
    with pytest.raises(wf.StaleTransition):
        wf.transition(db, workflow_id, wf.DRAFTED, actor="draft", expect=wf.DRAFTING)
    assert wf.get(db, workflow_id)["state"] == wf.RECEIVED
    assert len(wf.timeline(db, workflow_id)["events"]) == 1


def test_two_deliveries_racing_for_the_same_step_move_it_once(db):
    workflow_id = _new(db)
    outcomes: list[str] = []
    barrier = threading.Barrier(6)

    def attempt():
        barrier.wait()
        try:
            wf.transition(db, workflow_id, wf.DRAFTING, actor="draft", expect=wf.RECEIVED)
            outcomes.append("moved")
        except wf.StaleTransition:
            outcomes.append("stale")

    threads = [threading.Thread(target=attempt) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["moved"] + ["stale"] * 5
    assert wf.get(db, workflow_id)["version"] == 1


def test_unknown_workflow_is_not_found(db):
    from shared.errors import NotFound

    with pytest.raises(NotFound):
        wf.transition(db, "00000000-0000-0000-0000-000000000000", wf.DRAFTING, actor="x")


def test_a_failure_is_recorded_even_when_the_connection_drops_while_recording_it(db):
    from tests.reliability.faults import DroppingDatabase, FaultPlan

    workflow_id = _new(db)
    # The first two attempts lose their connection before COMMIT; the third gets through.
    flaky = DroppingDatabase(db, FaultPlan({"db_drop": 1.0}, max_streak=2))
    wf.record_error(flaky, workflow_id, "send", code="gmail_unavailable", message="Gmail 500", retryable=True)
    assert flaky.dropped == 2
    assert [e["code"] for e in wf.timeline(db, workflow_id)["errors"]] == ["gmail_unavailable"]


def test_recording_a_failure_gives_up_with_the_error_when_the_database_stays_away(db):
    from shared.errors import RetryableError
    from tests.reliability.faults import DroppingDatabase, FaultPlan

    workflow_id = _new(db)
    flaky = DroppingDatabase(db, FaultPlan({"db_drop": 1.0}, max_streak=10))
    with pytest.raises(RetryableError):
        wf.record_error(flaky, workflow_id, "send", code="gmail_unavailable", message="Gmail 500", retryable=True)
    assert flaky.dropped == 3
    assert wf.timeline(db, workflow_id)["errors"] == []
