"""The ops dashboard in Chromium against the real local stack."""

from __future__ import annotations

import datetime as dt
import json
import uuid

import pytest
import requests
from playwright.sync_api import expect

from tests.browser.conftest import OPS, PHONE, horizontal_overflow, screenshot, unlabelled_controls

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PAGE = "/dashboard.html"
REASONS = ["The company's industry, Gambling, is not in the allowed industries.",
           "The draft links to https://example.test/offer, which no source supports."]


def _flags(stack) -> dict:
    r = requests.get(f"{stack.url}/admin/flags", headers=OPS, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def _add_blocked_workflow(db, lead_email: str) -> str:
    """A lead that was drafted and blocked, stored as the pipeline stores one (submission, workflow,
    transitions, draft with the gate's decision and reasons)."""
    rep = db.query("SELECT id FROM reps WHERE email = 'alex@example.com'")[0]["id"]
    now = dt.datetime.now(dt.timezone.utc)
    sub = db.query("INSERT INTO form_submissions (idempotency_key, source, portal_id, contact_id, email, payload) "
                   "VALUES (%s, 'test', '4242', '101', %s, '{}') RETURNING id", (uuid.uuid4().hex, lead_email))
    wf = str(db.query("INSERT INTO workflows (submission_id, rep_id, state, contact_id, lead_email, created_at) "
                      "VALUES (%s, %s, 'BLOCKED', '101', %s, %s) RETURNING id",
                      (sub[0]["id"], rep, lead_email, now - dt.timedelta(minutes=5)))[0]["id"])
    for minutes, (before, after, reason) in enumerate([(None, "RECEIVED", "lead received"),
                                                       ("RECEIVED", "DRAFTING", ""), ("DRAFTING", "DRAFTED", ""),
                                                       ("DRAFTED", "BLOCKED", "; ".join(REASONS))]):
        db.query("INSERT INTO workflow_events (workflow_id, from_state, to_state, actor, reason, at) "
                 "VALUES (%s, %s, %s, 'gate', %s, %s)", (wf, before, after, reason, now - dt.timedelta(minutes=4 - minutes)))
    db.query("INSERT INTO draft_emails (workflow_id, subject, body, model, prompt_hash, voice_score, risk_score, "
             "decision, reasons, created_at, decided_at) VALUES (%s, 'Reorders, quickly', %s, 'offline-drafter', 'h', "
             "0.72, 0.8, 'BLOCK', %s::jsonb, %s, %s)",
             (wf, "Hi Jordan,\n\nQuick one on reorders.\n\nCheers,\nAlex", json.dumps(REASONS),
              now - dt.timedelta(minutes=2), now - dt.timedelta(minutes=1)))
    return wf


def test_kill_switch_goes_through_its_dialog_and_is_audited(open_page, stack):
    assert _flags(stack)["flags"]["kill_switch"] is False
    page = open_page(PAGE)
    toggle = page.get_by_role("button", name="Turn kill switch on")
    toggle.click()
    dialog = page.get_by_role("dialog", name="Turn the kill switch on?")
    expect(dialog).to_be_visible()
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    assert page.evaluate("document.activeElement.id") == "toggle-kill"
    assert _flags(stack)["flags"]["kill_switch"] is False  # cancelling changes nothing

    toggle.click()
    dialog.get_by_role("button", name="Turn kill switch on").click()
    expect(page.locator("#kill-state")).to_contain_text("ON")
    after = _flags(stack)
    assert after["flags"]["kill_switch"] is True
    assert after["flags"]["updated_by"] == "ops@example.com"
    audit_row = page.locator("#audit tbody tr", has_text="kill_switch").first
    expect(audit_row).to_contain_text("ops@example.com")
    expect(audit_row).to_contain_text("true")
    assert page.evaluate("document.activeElement.id") == "toggle-kill"

    # And back, so the switch works both ways (and the stack is left as it was found).
    page.get_by_role("button", name="Turn kill switch off").click()
    page.get_by_role("dialog", name="Turn the kill switch off?").get_by_role("button", name="Turn kill switch off").click()
    expect(page.locator("#kill-state")).to_have_text("Off")
    assert _flags(stack)["flags"]["kill_switch"] is False


def test_a_blocked_workflow_shows_its_gate_reasons_and_the_charts_count_it(open_page, stack):
    wf = _add_blocked_workflow(stack.container.db, "jordan.lee@northwind.example")
    page = open_page(PAGE)
    expect(page.locator("#top-reasons")).to_contain_text("Gambling")
    expect(page.locator("#reasons-chart")).to_contain_text("Guardrails")
    expect(page.locator("#week-cards")).to_contain_text("Blocked")
    assert page.locator("#daily-chart svg rect.bar.blocked").count() == 7

    page.get_by_label("State").select_option("BLOCKED")
    page.get_by_label("Lead email or contact id").fill("northwind")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#workflows tbody tr")).to_have_count(1)  # the filtered page has replaced the first
    row = page.locator(f"#workflows tbody tr[data-id='{wf}']")
    expect(row).to_contain_text("Blocked")
    expect(row).to_contain_text("72%")
    opener = row.get_by_role("button", name="Open workflow of jordan.lee@northwind.example")
    opener.click()
    dialog = page.get_by_role("dialog", name="Workflow for jordan.lee@northwind.example")
    expect(dialog).to_be_visible()
    reasons = dialog.locator("#wf-reasons li")
    expect(reasons).to_have_text(REASONS)
    expect(dialog).to_contain_text("BLOCK")
    expect(dialog).to_contain_text("Reorders, quickly")
    expect(dialog.get_by_role("link", name="HubSpot contact")).to_have_attribute(
        "href", "https://app.hubspot.com/contacts/4242/record/0-1/101")
    expect(dialog.locator(".timeline li")).to_have_count(4)
    screenshot(page, "dashboard-workflow")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    assert page.evaluate("document.activeElement.textContent") == "Open"


def test_workflow_pages_follow_the_cursor(open_page, stack):
    db = stack.container.db
    subs = db.query("INSERT INTO form_submissions (idempotency_key, source, payload) "
                    "SELECT 'page-' || g || '-' || %s, 'test', '{}' FROM generate_series(1, 30) g RETURNING id",
                    (uuid.uuid4().hex,))
    for n, sub in enumerate(subs):
        db.query("INSERT INTO workflows (submission_id, lead_email) VALUES (%s, %s)",
                 (sub["id"], f"pager-{n:02d}@acme.test"))
    page = open_page(PAGE)
    page.get_by_label("Lead email or contact id").fill("pager-")
    page.get_by_role("button", name="Filter").click()
    rows = page.locator("#workflows tbody tr")
    expect(rows).to_have_count(25)
    first_page = set(rows.all_inner_texts())
    page.get_by_role("button", name="Next page").click()
    expect(rows).to_have_count(5)
    expect(page.get_by_role("button", name="Next page")).to_be_disabled()
    assert not first_page & set(rows.all_inner_texts())
    page.get_by_role("button", name="Previous page").click()
    expect(rows).to_have_count(25)
    expect(page.get_by_role("button", name="Previous page")).to_be_disabled()


def test_quotas_guardrails_and_reps(open_page, stack):
    page = open_page(PAGE)
    expect(page.locator("#reps tbody tr")).to_have_count(2)
    alex = page.locator("#reps tbody tr", has_text="alex@example.com")
    expect(alex).to_contain_text("disconnected")
    expect(alex.get_by_role("link", name="Connect Google for alex@example.com")).to_have_attribute(
        "href", f"{stack.url}/token-refresh/connect?rep=" + stack.container.db.query(
            "SELECT id FROM reps WHERE email = 'alex@example.com'")[0]["id"].__str__())

    quota = page.locator("form.quota", has_text="alex@example.com")
    quota.get_by_label("Per day").fill("12")
    quota.get_by_role("button", name="Save quota for alex@example.com").click()
    expect(page.locator("#status")).to_contain_text("Quota for alex@example.com saved")
    rep_id = quota.get_attribute("data-rep")
    limits = requests.get(f"{stack.url}/admin/quotas/{rep_id}", headers=OPS, timeout=30).json()["limits"]
    assert limits["per_day"] == 12

    cap = page.locator("form.quota.global")
    cap.get_by_label("Global cap per day").fill("150")
    cap.get_by_role("button", name="Save global cap").click()
    expect(page.locator("#status")).to_contain_text("Global cap saved")
    assert requests.get(f"{stack.url}/admin/quotas/global", headers=OPS, timeout=30).json()["per_day"] == 150
    expect(page.locator("form.quota.global")).to_contain_text("of 150 sends")
    expect(page.locator("#audit")).to_contain_text("quotas.GLOBAL.per_day")

    page.get_by_label("Allowed industries", exact=False).fill("Software, Wholesale")
    page.get_by_role("button", name="Save guardrails").click()
    expect(page.locator("#status")).to_contain_text("Guardrails saved")
    guardrails = requests.get(f"{stack.url}/admin/guardrails", headers=OPS, timeout=30).json()
    assert guardrails["allowed_industries"] == ["Software", "Wholesale"]
    expect(page.locator("#audit")).to_contain_text("guardrails.allowed_industries")
    assert unlabelled_controls(page) == []
    screenshot(page, "dashboard")


def test_phone_width_keeps_everything_reachable(open_page):
    page = open_page(PAGE, viewport=PHONE)
    expect(page.locator("#reps tbody tr")).to_have_count(2)
    expect(page.locator("#daily-chart svg")).to_be_visible()
    assert horizontal_overflow(page) <= 0
    screenshot(page, "dashboard-phone")
