"""The CRM's lead reads and its writes (tasks and notes), on HubSpot (the real client against the stand-in)
and on the sandbox CRM."""

from __future__ import annotations

import datetime as dt

import pytest

from shared.adapters.hubspot_crm import HubSpotCrm, SandboxCrm
from shared.drafting import CrmWriter, LeadDirectory
from shared.errors import BadRequest, DependencyDown, NotFound, PermanentError, RateLimited
from tests.standins.hubspot import ACCESS_TOKEN

DUE = dt.datetime(2025, 3, 4, 15, 30, tzinfo=dt.timezone.utc)


@pytest.fixture(params=["hubspot", "sandbox"])
def crm(request, tmp_path):
    if request.param == "sandbox":
        return SandboxCrm(tmp_path)
    standin = request.getfixturevalue("hubspot_standin")
    return HubSpotCrm(ACCESS_TOKEN, host=standin.base_url, timeout=5)


def test_both_adapters_serve_the_drafting_ports(crm):
    assert isinstance(crm, LeadDirectory) and isinstance(crm, CrmWriter)


# --- reads ---------------------------------------------------------------------------------------


def test_a_contact_by_id_carries_the_lead_fields(crm):
    got = crm.contact("101")
    assert got["id"] == "101"
    props = got["properties"]
    assert props["email"] == "jordan.lee@northwind.example" and props["firstname"] == "Jordan"
    assert props["hubspot_owner_id"] == "7001" and props["hs_timezone"] == "america_slash_los_angeles"
    assert props["hs_email_optout"] == "false" and props["message"].startswith("Could we see")


def test_extra_properties_are_read_when_asked(crm, request):
    if isinstance(crm, SandboxCrm):
        data = crm._load()
        data["objects"]["contacts"]["101"]["properties"]["hs_email_optout_77"] = "true"
        crm._save(data)
    else:
        request.getfixturevalue("hubspot_standin").data["objects"]["contacts"]["101"]["properties"][
            "hs_email_optout_77"] = "true"
    assert "hs_email_optout_77" not in crm.contact("101")["properties"]
    assert crm.contact("101", extra_properties=["hs_email_optout_77"])["properties"]["hs_email_optout_77"] == "true"


def test_a_contact_by_email_is_an_exact_match_not_a_text_search(crm):
    assert crm.find_contact_by_email("Priya@Contoso.example")["id"] == "102"
    assert crm.find_contact_by_email("priya@contoso") is None
    assert crm.find_contact_by_email("not an email") is None


def test_the_company_of_a_contact_and_by_domain(crm):
    company = crm.company_of_contact("101")
    assert company["id"] == "201"
    assert company["properties"] == {"name": "Northwind Traders", "domain": "northwind.example",
                                     "lifecyclestage": "opportunity", "industry": "Wholesale",
                                     "numberofemployees": "180"}
    assert crm.company_of_contact("103") is None
    assert crm.find_company_by_domain("CONTOSO.example")["id"] == "202"
    assert crm.find_company_by_domain("fabrikam.example") is None


def test_owners_by_id(crm):
    assert crm.owner("7001") == {"id": "7001", "email": "alex@example.com", "first_name": "Alex",
                                 "last_name": "Rivera"}
    assert crm.owner("7999") is None
    assert crm.owner("not-a-number") is None


def test_a_missing_contact_is_not_found(crm):
    with pytest.raises(NotFound):
        crm.contact("999999")


# --- writes --------------------------------------------------------------------------------------


def _associated_to_contact(crm, request, object_type, object_id):
    if isinstance(crm, SandboxCrm):
        data = crm.snapshot()  # the seeded records and every write since
    else:
        data = request.getfixturevalue("hubspot_standin").data
    return [a for a in data["associations"] if a["from"] == [object_type, object_id]]


def test_create_task_assigns_the_owner_and_associates_the_contact(crm, request):
    task_id = crm.create_task("101", "7001", "Follow up with Jordan", "Sent the follow-up email.", DUE, "task:wf-1")
    assert task_id.isdigit()
    links = _associated_to_contact(crm, request, "tasks", task_id)
    assert links == [{"from": ["tasks", task_id], "to": ["contacts", "101"], "typeId": 204}]
    if isinstance(crm, HubSpotCrm):
        standin = request.getfixturevalue("hubspot_standin")
        create = [r for r in standin.requests if r.method == "POST" and r.path == "/crm/v3/objects/tasks"]
        assert len(create) == 1 and create[0].status == 201
        body = create[0].json()
        assert body["properties"] == {"hs_timestamp": "2025-03-04T15:30:00.000Z",
                                      "hs_task_subject": "Follow up with Jordan",
                                      "hs_task_body": "Sent the follow-up email.", "hs_task_status": "NOT_STARTED",
                                      "hs_task_type": "EMAIL", "hubspot_owner_id": "7001"}
        assert body["associations"] == [{"to": {"id": "101"}, "types": [
            {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 204}]}]


def test_create_note_associates_the_contact(crm, request):
    note_id = crm.create_note("102", "<p>Email sent: <b>The numbers</b></p>", DUE, "note:wf-2")
    links = _associated_to_contact(crm, request, "notes", note_id)
    assert links == [{"from": ["notes", note_id], "to": ["contacts", "102"], "typeId": 202}]


def test_idempotency_keys(crm):
    first = crm.create_note("102", "<p>once</p>", DUE, "note:wf-3")
    if isinstance(crm, SandboxCrm):
        # The sandbox remembers keys: a retried write answers the first record.
        assert crm.create_note("102", "<p>once</p>", DUE, "note:wf-3") == first
        assert crm.find_by_idempotency_key("note:wf-3") == first
    else:
        # HubSpot keeps no idempotency keys: the caller's own table is the exactly-once record.
        assert crm.find_by_idempotency_key("note:wf-3") is None
    assert crm.find_by_idempotency_key("never-written") is None


def test_bad_write_arguments_are_refused_before_any_request(crm):
    with pytest.raises(BadRequest):
        crm.create_note("102", "x", dt.datetime(2025, 1, 1), "k")  # naive time
    with pytest.raises(BadRequest):
        crm.create_task("1 OR 1", None, "s", "b", DUE, "k")
    with pytest.raises(BadRequest):
        crm.create_note("102", "x", DUE, "")


def test_a_write_to_a_missing_contact_fails_permanently(crm):
    with pytest.raises(PermanentError):  # HubSpot: 400 "associations are invalid"; the sandbox: NotFound
        crm.create_note("999999", "<p>x</p>", DUE, "note:missing")


def test_hubspot_write_rate_limit_and_outage(hubspot_standin):
    crm = HubSpotCrm(ACCESS_TOKEN, host=hubspot_standin.base_url, timeout=5)
    hubspot_standin.rate_limit_next()
    with pytest.raises(RateLimited):
        crm.create_task("101", "7001", "s", "b", DUE, "task:rl")
    hubspot_standin.fail_next(503, {"status": "error", "message": "Service unavailable"})
    with pytest.raises(DependencyDown, match="503"):
        crm.create_note("101", "<p>n</p>", DUE, "note:down")
    hubspot_standin.fail_next(502, {"status": "error", "message": "Bad gateway"}, path="/crm/v3/owners/")
    with pytest.raises(DependencyDown):
        crm.owner("7001")
    assert crm.create_note("101", "<p>n</p>", DUE, "note:down").isdigit()  # and then it works


# --- the sandbox's journal ---------------------------------------------------------------------------


def test_sandbox_writes_are_appended_and_seen_by_another_instance_on_the_same_dir(tmp_path):
    first, second = SandboxCrm(tmp_path), SandboxCrm(tmp_path)  # two processes of the local stack
    assert second.find_by_idempotency_key("note:wf-9") is None  # reads (and caches) the seed
    seed = first.path.read_bytes()
    note = first.create_note("101", "<p>hello</p>", DUE, "note:wf-9")
    assert first.path.read_bytes() == seed  # the seed file is never rewritten by a write
    assert len(first.journal.read_text().splitlines()) == 1
    # The other instance catches up: it answers the same id for the same key and numbers past it.
    assert second.create_note("101", "<p>hello</p>", DUE, "note:wf-9") == note
    task = second.create_task("101", "7001", "Call", "Call Jordan", DUE, "task:wf-9")
    assert int(task) == int(note) + 1
    assert first.find_by_idempotency_key("task:wf-9") == task
    assert {"from": ["contacts", "101"], "to": ["tasks", task]} in first.snapshot()["associations"]


def test_sandbox_reader_waits_for_a_line_still_being_written(tmp_path):
    crm = SandboxCrm(tmp_path)
    crm.create_note("101", "<p>one</p>", DUE, "note:a")
    whole = SandboxCrm(tmp_path).journal.read_bytes()
    line = whole.replace(b'"note:a"', b'"note:b"').replace(b"<p>one</p>", b"<p>two</p>")
    with crm.journal.open("ab") as handle:
        handle.write(line[:40])  # a writer in another process is half-way through its line
    reader = SandboxCrm(tmp_path)
    assert reader.find_by_idempotency_key("note:a") is not None
    assert reader.find_by_idempotency_key("note:b") is None
    with crm.journal.open("ab") as handle:
        handle.write(line[40:])
    assert reader.find_by_idempotency_key("note:b") is not None


def test_sandbox_starts_again_from_the_seed_when_its_journal_is_removed(tmp_path):
    crm = SandboxCrm(tmp_path)
    crm.add_contact({"email": "new@lead.example"}, company_id="201")
    assert crm.find_contact_by_email("new@lead.example") is not None
    crm.journal.unlink()  # what `make clean`-style resets do
    assert crm.find_contact_by_email("new@lead.example") is None
    assert crm.company_of_contact("101")["id"] == "201"


def test_sandbox_contacts_added_for_the_demo_belong_to_their_company(tmp_path):
    crm = SandboxCrm(tmp_path)
    contact = crm.add_contact({"email": "Dana@Northwind.example", "firstname": "Dana"}, company_id="201")
    assert crm.company_of_contact(contact)["id"] == "201"
    assert crm.find_contact_by_email("dana@northwind.example")["id"] == contact
    with pytest.raises(NotFound):
        crm.add_contact({"email": "x@y.example"}, company_id="999")


def test_sandbox_racing_writers_create_each_key_once(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    crms = [SandboxCrm(tmp_path) for _ in range(3)]  # threads of one instance and other instances

    def write(i: int) -> str:
        return crms[i % 3].create_note("102", f"<p>{i % 20}</p>", DUE, f"note:race-{i % 20}")

    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(write, range(80)))
    by_key: dict[int, set[str]] = {}
    for i, object_id in enumerate(ids):
        by_key.setdefault(i % 20, set()).add(object_id)
    assert all(len(found) == 1 for found in by_key.values())
    assert len(set(ids)) == 20 and len(crms[0].journal.read_text().splitlines()) == 20
