"""Flags, guardrails and quota limits on the embedded store."""

from __future__ import annotations

import datetime as dt

import pytest

from shared import flags
from shared.adapters.local_store import LocalStore
from shared.errors import BadRequest

UTC = dt.timezone.utc
NOW = dt.datetime(2025, 1, 29, 15, 0, tzinfo=UTC)
OPS = "ops@example.com"


@pytest.fixture
def store(tmp_path):
    return LocalStore(tmp_path)


class FakeClock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


class CountingStore:
    """The real LocalStore, counting reads of flags/global."""

    def __init__(self, inner):
        self.inner = inner
        self.flag_reads = 0

    def get(self, collection, doc_id):
        if (collection, doc_id) == (flags.FLAGS, flags.GLOBAL_DOC):
            self.flag_reads += 1
        return self.inner.get(collection, doc_id)

    def __getattr__(self, name):
        return getattr(self.inner, name)


# --- flags ---------------------------------------------------------------------------------------


def test_defaults_when_nothing_was_set(store):
    current = flags.read_flags(store, max_age_seconds=0)
    assert current == flags.Flags(send_mode=flags.DRAFT_ONLY, kill_switch=False)
    assert not current.sending_allowed
    assert flags.kill_switch_engaged(store) is False
    assert flags.list_audit(store) == []


def test_set_flags_writes_and_audits_each_changed_field(store):
    result = flags.set_flags(store, {"send_mode": "SEND_ALLOWED", "kill_switch": True}, OPS, NOW)
    assert (result.send_mode, result.kill_switch, result.updated_by, result.updated_at) == (
        flags.SEND_ALLOWED, True, OPS, NOW)
    assert store.get(flags.FLAGS, flags.GLOBAL_DOC)["send_mode"] == flags.SEND_ALLOWED
    entries = flags.list_audit(store)
    assert sorted((e["key"], e["old"], e["new"], e["actor"], e["at"]) for e in entries) == [
        ("kill_switch", False, True, OPS, NOW),
        ("send_mode", flags.DRAFT_ONLY, flags.SEND_ALLOWED, OPS, NOW),
    ]


def test_unchanged_values_write_no_audit_entry(store):
    flags.set_flags(store, {"kill_switch": True}, OPS, NOW)
    flags.set_flags(store, {"kill_switch": True, "send_mode": "DRAFT_ONLY"}, "other@example.com",
                    NOW + dt.timedelta(minutes=1))
    assert len(flags.list_audit(store)) == 1
    assert flags.read_flags(store, max_age_seconds=0).updated_by == OPS


def test_audit_lists_newest_first_with_a_limit(store):
    for minute in range(5):
        flags.set_flags(store, {"kill_switch": minute % 2 == 0}, f"ops{minute}@example.com",
                        NOW + dt.timedelta(minutes=minute))
    latest = flags.list_audit(store, limit=3)
    assert [e["actor"] for e in latest] == ["ops4@example.com", "ops3@example.com", "ops2@example.com"]
    assert [e["new"] for e in latest] == [True, False, True]
    assert latest[0]["old"] is False
    assert len({e["id"] for e in flags.list_audit(store)}) == 5


@pytest.mark.parametrize("changes, message", [
    ({"send_mode": "SEND_EVERYTHING"}, "send_mode"),
    ({"send_mode": 1}, "send_mode"),
    ({"kill_switch": "yes"}, "kill_switch"),
    ({"kill_switch": 1}, "kill_switch"),
    ({"sendmode": "DRAFT_ONLY"}, "sendmode"),
    ({}, "No flags"),
])
def test_bad_flag_changes_are_refused_and_change_nothing(store, changes, message):
    with pytest.raises(BadRequest, match=message) as info:
        flags.set_flags(store, changes, OPS, NOW)
    assert info.value.status == 400
    assert store.get(flags.FLAGS, flags.GLOBAL_DOC) is None
    assert flags.list_audit(store) == []


def test_a_change_needs_an_actor(store):
    with pytest.raises(BadRequest):
        flags.set_flags(store, {"kill_switch": True}, " ", NOW)


def test_send_mode_is_normalised_and_read_only_fields_are_ignored(store):
    result = flags.set_flags(store, {"send_mode": " send_allowed ", "updated_by": "forged@example.com"}, OPS, NOW)
    assert result.send_mode == flags.SEND_ALLOWED and result.updated_by == OPS


def test_read_flags_reuses_a_recent_read_until_it_is_too_old(store):
    counting = CountingStore(store)
    clock = FakeClock()
    assert flags.read_flags(counting, max_age_seconds=5, clock=clock).kill_switch is False
    store.set(flags.FLAGS, flags.GLOBAL_DOC, {"send_mode": flags.DRAFT_ONLY, "kill_switch": True})  # elsewhere
    clock.now += 4.9
    assert flags.read_flags(counting, max_age_seconds=5, clock=clock).kill_switch is False
    assert counting.flag_reads == 1
    clock.now += 0.1
    assert flags.read_flags(counting, max_age_seconds=5, clock=clock).kill_switch is True
    assert counting.flag_reads == 2
    assert flags.read_flags(counting, max_age_seconds=0, clock=clock).kill_switch is True
    assert counting.flag_reads == 3


def test_the_cache_is_per_store(tmp_path):
    first, second = LocalStore(tmp_path / "a"), LocalStore(tmp_path / "b")
    clock = FakeClock()
    flags.set_flags(second, {"send_mode": flags.SEND_ALLOWED}, OPS, NOW)
    assert flags.read_flags(first, max_age_seconds=60, clock=clock).send_mode == flags.DRAFT_ONLY
    assert flags.read_flags(second, max_age_seconds=60, clock=clock).send_mode == flags.SEND_ALLOWED


def test_set_flags_in_this_process_is_seen_at_once(store):
    clock = FakeClock()
    flags.read_flags(store, max_age_seconds=60, clock=clock)
    flags.set_flags(store, {"send_mode": flags.SEND_ALLOWED}, OPS, NOW)
    assert flags.read_flags(store, max_age_seconds=60, clock=clock).send_mode == flags.SEND_ALLOWED


def test_kill_switch_is_always_read_fresh(store):
    counting = CountingStore(store)
    clock = FakeClock()
    flags.read_flags(counting, max_age_seconds=60, clock=clock)  # a warm cache saying "off"
    store.set(flags.FLAGS, flags.GLOBAL_DOC, {"kill_switch": True})  # engaged by another instance
    assert flags.kill_switch_engaged(counting) is True
    assert flags.kill_switch_engaged(counting) is True
    assert counting.flag_reads == 3


@pytest.mark.parametrize("doc, mode, kill", [
    ({"send_mode": "SEND_EVERYTHING"}, flags.DRAFT_ONLY, False),
    ({"send_mode": "SEND_ALLOWED", "kill_switch": "false"}, flags.SEND_ALLOWED, True),
])
def test_malformed_stored_flags_fail_safe(store, doc, mode, kill):
    store.set(flags.FLAGS, flags.GLOBAL_DOC, doc)
    current = flags.read_flags(store, max_age_seconds=0)
    assert (current.send_mode, current.kill_switch, current.sending_allowed) == (mode, kill, False)


def test_flags_to_json(store):
    flags.set_flags(store, {"kill_switch": True}, OPS, NOW)
    assert flags.read_flags(store, max_age_seconds=0).to_json() == {
        "send_mode": "DRAFT_ONLY", "kill_switch": True, "updated_by": OPS, "updated_at": "2025-01-29T15:00:00Z"}


# --- guardrails ----------------------------------------------------------------------------------


def test_guardrails_default_to_no_restriction(store):
    rails = flags.get_guardrails(store)
    assert rails == flags.Guardrails()
    assert rails.violations(company_stage=None, industry=None, employees=None) == []


def test_set_guardrails_normalises_and_audits(store):
    rails = flags.set_guardrails(store, {"allowed_company_stages": [" lead ", "customer", "Lead"],
                                         "employee_min": 10, "employee_max": 500}, OPS, NOW)
    assert rails.allowed_company_stages == ("lead", "customer")
    assert (rails.employee_min, rails.employee_max, rails.updated_by) == (10, 500, OPS)
    assert flags.get_guardrails(store) == rails
    assert sorted(e["key"] for e in flags.list_audit(store)) == [
        "guardrails.allowed_company_stages", "guardrails.employee_max", "guardrails.employee_min"]
    flags.set_guardrails(store, {"employee_max": None}, OPS, NOW)
    assert flags.get_guardrails(store).employee_max is None
    assert flags.list_audit(store, limit=1)[0]["old"] == 500


@pytest.mark.parametrize("changes", [
    {"employee_min": -1},
    {"employee_min": 1.5},
    {"employee_max": True},
    {"employee_min": 100, "employee_max": 10},
    {"allowed_industries": "software"},
    {"allowed_industries": ["software", ""]},
    {"allowed_industries": [3]},
    {"allowed_countries": ["FR"]},
])
def test_bad_guardrails_are_refused(store, changes):
    with pytest.raises(BadRequest):
        flags.set_guardrails(store, changes, OPS, NOW)
    assert store.get(flags.GUARDRAILS, flags.GLOBAL_DOC) is None


def test_guardrail_min_is_checked_against_the_stored_max(store):
    flags.set_guardrails(store, {"employee_max": 50}, OPS, NOW)
    with pytest.raises(BadRequest, match="above employee_max"):
        flags.set_guardrails(store, {"employee_min": 51}, OPS, NOW)


def test_guardrail_violations(store):
    rails = flags.set_guardrails(store, {"allowed_company_stages": ["lead"], "allowed_industries": ["Software"],
                                         "employee_min": 10, "employee_max": 100}, OPS, NOW)
    assert rails.violations(company_stage="Lead", industry="software", employees=10) == []
    reasons = rails.violations(company_stage="customer", industry="Banking", employees=101)
    assert len(reasons) == 3 and "customer" in reasons[0] and "Banking" in reasons[1] and "101" in reasons[2]
    assert len(rails.violations(company_stage=None, industry="software", employees=None)) == 2


# --- quota limits --------------------------------------------------------------------------------


def test_quota_limits_default_then_set_and_audited(store):
    assert flags.get_quota_limits(store, "alex@example.com") == flags.QuotaLimits()
    limits = flags.set_quota_limits(store, "alex@example.com", {"per_day": 20}, OPS, NOW)
    assert (limits.per_day, limits.per_week, limits.is_default, limits.updated_by) == (
        20, flags.DEFAULT_PER_WEEK, False, OPS)
    assert flags.get_quota_limits(store, "sam@example.com").is_default
    [entry] = flags.list_audit(store)
    assert (entry["key"], entry["old"], entry["new"]) == ("quotas.alex@example.com.per_day", flags.DEFAULT_PER_DAY, 20)


@pytest.mark.parametrize("changes", [
    {"per_day": -1},
    {"per_day": flags.MAX_PER_DAY + 1},
    {"per_day": "10"},
    {"per_day": False},
    {"per_day": 300},  # above the default week of 200
    {"per_week": 5, "per_day": 6},
    {"per_month": 10},
])
def test_bad_quota_limits_are_refused(store, changes):
    with pytest.raises(BadRequest):
        flags.set_quota_limits(store, "alex@example.com", changes, OPS, NOW)
    assert flags.get_quota_limits(store, "alex@example.com").is_default


@pytest.mark.parametrize("rep_id", ["", "a/b", flags.GLOBAL_QUOTA_DOC])
def test_bad_rep_ids_are_refused(store, rep_id):
    with pytest.raises(BadRequest):
        flags.set_quota_limits(store, rep_id, {"per_day": 1}, OPS, NOW)


def test_global_cap_default_set_and_audited(store):
    assert flags.get_global_cap(store) == flags.DEFAULT_GLOBAL_PER_DAY
    assert flags.set_global_cap(store, 300, OPS, NOW) == 300
    assert flags.get_global_cap(store) == 300
    [entry] = flags.list_audit(store)
    assert (entry["key"], entry["old"], entry["new"]) == ("quotas.GLOBAL.per_day", flags.DEFAULT_GLOBAL_PER_DAY, 300)
    with pytest.raises(BadRequest):
        flags.set_global_cap(store, -5, OPS, NOW)
    # The global cap is not a rep's limits.
    assert flags.get_quota_limits(store, "alex@example.com").is_default


def test_turning_the_kill_switch_logs_the_message_its_alert_matches(tmp_path, caplog):
    import datetime as _dt
    import logging as _logging

    from shared.adapters.local_store import LocalStore
    from shared.flags import set_flags

    store = LocalStore(tmp_path)
    with caplog.at_level(_logging.INFO, logger="shared.flags"):
        set_flags(store, {"kill_switch": True}, "ops@example.com", _dt.datetime.now(_dt.timezone.utc))
    records = [r for r in caplog.records if r.getMessage() == "kill switch changed"]
    assert len(records) == 1 and records[0].fields == {"kill_switch": True}
