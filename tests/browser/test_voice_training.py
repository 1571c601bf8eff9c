"""The voice-training page in Chromium against the real local stack (embedded adapters, the local MiniLM
model and the real extract → embed pipeline)."""

from __future__ import annotations

import base64
import re

import pytest
import requests
from playwright.sync_api import expect

from shared.errors import AppError
from shared.voice import links
from tests import builders
from tests.browser.conftest import (ALEX, PHONE, horizontal_overflow, samples, screenshot, unlabelled_controls,
                                    wait_for_api)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PAGE = "/voice-training.html"
PIPELINE_SECONDS = 90_000  # ms: extraction and embedding on the real model, on a slow machine


def _gallery_row(page, title: str):
    return page.locator("#gallery tbody tr", has_text=title)


def test_dropping_a_pdf_uploads_it_with_progress_and_it_reaches_ready(open_page, stack):
    page = open_page(PAGE)
    expect(page.locator("#gallery tbody tr").first).to_be_visible()
    pdf = builders.pdf(["Hey Chris - quick one. The pilot is live and the logins are in your inbox. "
                        "Shout if anything looks off and I will jump on a call. Cheers, Alex",
                        "Recap from today: you want the reorder flow first, then reporting. I will send the "
                        "setup guide tonight so your team can try it before Thursday."])
    # A real drop event whose DataTransfer carries a File made from the PDF's bytes, as a browser builds
    # it when a file is dragged in from the desktop.
    page.evaluate("""([b64, name]) => {
        const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], name, { type: 'application/pdf' }));
        const zone = document.getElementById('dropzone');
        for (const type of ['dragenter', 'dragover', 'drop']) {
            zone.dispatchEvent(new DragEvent(type, { bubbles: true, cancelable: true, dataTransfer: transfer }));
        }
    }""", [base64.b64encode(pdf).decode(), "pilot-recap.pdf"])

    upload = page.locator("#uploads li", has_text="pilot-recap.pdf")
    expect(upload.locator(".upload-status")).to_contain_text("Uploaded", timeout=30_000)
    assert upload.locator("progress").get_attribute("value") == "100"
    row = _gallery_row(page, "pilot-recap.pdf")
    expect(row).to_have_attribute("data-status", "ready", timeout=PIPELINE_SECONDS)
    assert int(row.locator("td.num").inner_text()) > 30
    stored = [s for s in samples(stack) if s["title"] == "pilot-recap.pdf"]
    assert [s["status"] for s in stored] == ["ready"]
    expect(page.locator("#status")).to_contain_text("is ready")
    screenshot(page, "voice-training")


def test_a_pasted_youtube_link_is_recognised_then_fails_clearly_offline(open_page, stack):
    page = open_page(PAGE)
    field = page.get_by_label("Link to a YouTube video", exact=False)
    field.fill("https://www.dropbox.com/s/abc123/notes.pdf?dl=0")
    expect(page.locator("#link-kind")).to_have_text("Recognised: Dropbox share link.")
    field.fill("youtu.be/dQw4w9WgXcQ")
    expect(page.locator("#link-kind")).to_have_text("Recognised: YouTube video.")
    page.get_by_role("button", name="Add link").click()

    # This machine has no internet: the transcript fetch fails and the sample must say so in words.
    row = _gallery_row(page, "youtu.be/dQw4w9WgXcQ")
    expect(row).to_have_attribute("data-status", "failed", timeout=PIPELINE_SECONDS)
    expect(row.locator(".badge")).to_have_text("Failed")
    expect(row.locator(".sample-error")).to_contain_text("YouTube")
    assert "Traceback" not in row.inner_text()

    page.get_by_label("Status", exact=True).select_option("failed")
    expect(page.locator("#gallery tbody tr")).to_have_count(1)
    page.get_by_label("Source", exact=True).select_option("upload")
    expect(page.locator("#gallery tbody tr")).to_have_count(0)
    expect(page.locator("#gallery-summary")).to_contain_text("No samples match")


# Links of every kind, odd forms included; the page's classify must agree with the server's.
LINKS = [
    "https://www.youtube.com/watch?v=dQw4w9WgXcQ", "youtu.be/dQw4w9WgXcQ", "https://youtube.com/shorts/dQw4w9WgXcQ",
    "https://m.youtube.com/watch?v=short", "https://www.youtube.com/@channel",
    "https://docs.google.com/document/d/1AbCdEfGhIjKlMnOp/edit", "https://drive.google.com/drive/u/0/folders/1AbCdEfGhIjK",
    "https://drive.google.com/open?id=1AbCdEfGhIjKlMn", "https://drive.google.com/drive/my-drive",
    "https://www.dropbox.com/scl/fi/x1/deck.pdf?rlkey=k&dl=0", "https://1drv.ms/w/s!AbCd",
    "https://contoso.sharepoint.com/:w:/g/personal/doc", "https://contoso.sharepoint.com/sites/x",
    "https://app.box.com/s/abc123", "https://acme.box.com/folder/1",
    "https://app.hubspot.com/contacts/4242/record/0-1/101", "https://app-eu1.hubspot.com/contacts/4242/company/201",
    "https://app.hubspot.com/reports/4242", "example.com/blog/post", "localhost:8080/x", "//cdn.example.com/a",
    "javascript:alert(1)", "ftp://files.example.com/a", "not a link", "hello", "",
]


def test_the_paste_box_recognises_links_as_the_server_does(open_page):
    page = open_page(PAGE)
    verdicts = page.evaluate("""async (urls) => {
        const { classify } = await import('/assets/links.js');
        return urls.map((u) => { try { return classify(u).kind; } catch (e) { return 'refused'; } });
    }""", LINKS)
    expected = []
    for url in LINKS:
        try:
            expected.append(links.classify(url).kind)
        except AppError:
            expected.append("refused")
    assert dict(zip(LINKS, verdicts)) == dict(zip(LINKS, expected))
    assert set(expected) >= {"youtube", "drive", "dropbox", "onedrive", "box", "hubspot", "web", "refused"}


def test_deleting_a_sample_asks_first_and_escape_keeps_it(open_page, stack):
    page = open_page(PAGE)
    row = _gallery_row(page, "closing")
    expect(row).to_have_count(1)
    sample_id = row.get_attribute("data-id")
    delete = row.get_by_role("button", name="Delete closing")
    delete.click()
    dialog = page.get_by_role("dialog", name="Delete this sample?")
    expect(dialog).to_be_visible()
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    # Focus goes back to the button that opened the dialog, so a keyboard user keeps their place.
    assert page.evaluate("document.activeElement.getAttribute('aria-label')") == "Delete closing"
    assert requests.get(f"{stack.url}/ingest/samples/{sample_id}", headers=ALEX, timeout=30).status_code == 200

    delete.click()
    dialog.get_by_role("button", name="Delete sample").click()
    expect(_gallery_row(page, "closing")).to_have_count(0)
    expect(page.locator("#status")).to_contain_text("deleted")
    assert requests.get(f"{stack.url}/ingest/samples/{sample_id}", headers=ALEX, timeout=30).status_code == 404


def test_does_this_sound_like_me_shows_my_score_and_rank(open_page, stack):
    wait_for_api(lambda: not any(s["status"] in ("queued", "extracting", "embedding") for s in samples(stack)),
                 timeout=120, what="alex's samples to settle")
    text = ("Hey Jordan - great chatting today. Quick recap: you want the reorder flow first, then reporting. "
            "I'll send the setup guide tonight so your team can try it before Thursday. Cheers, Alex")
    page = open_page(PAGE)
    page.get_by_label("Paste an email or a paragraph").fill(text)
    page.get_by_role("button", name="Score it").click()
    expect(page.locator("#match-rank")).to_be_visible()

    scores = requests.post(f"{stack.url}/ingest/profile/match", json={"text": text}, headers=ALEX,
                           timeout=60).json()["scores"]
    rank = [s["email"] for s in scores].index("alex@example.com")
    mine = scores[rank]["score"]
    expect(page.locator("#match-score .score")).to_have_text(f"{round(mine * 100)}%")
    expect(page.locator("#match-rank")).to_have_text(f"You rank {rank + 1} of {len(scores)} reps for this text.")

    page.get_by_label("Paste an email or a paragraph").fill("Too short to judge.")
    page.get_by_role("button", name="Score it").click()
    expect(page.locator("#match-result")).to_contain_text("at least 20 words")


def test_profile_hubspot_import_and_accessibility(open_page, stack):
    page = open_page(PAGE)
    profile = page.locator("#profile")
    expect(profile).to_contain_text("Strength:")
    expect(profile.locator("#sentence-chart svg[role=img]")).to_have_count(1)
    expect(profile).to_contain_text("How you sign off")
    expect(profile.locator("#source-bars")).to_contain_text("Upload")
    # Offline and local, the Drive picker cannot load: the page says what to do instead.
    expect(page.locator("#drive-fallback")).to_be_visible()
    expect(page.locator("#drive-button")).to_be_hidden()
    assert unlabelled_controls(page) == []

    page.get_by_label("Search contacts, companies and deals").fill("northwind")
    page.get_by_role("button", name="Search", exact=True).click()
    record = page.get_by_role("radio", name=re.compile(r"^Contact: Jordan Lee"))
    expect(record).to_be_visible()
    record.check()
    page.get_by_label("Call transcripts").uncheck()
    page.get_by_role("button", name="Import selected record").click()
    expect(page.locator("#status")).to_contain_text("HubSpot record added")
    imported = [s for s in samples(stack) if s["source_type"] == "hubspot"]
    assert [(s["metadata"].get("object_type"), s["metadata"].get("object_id")) for s in imported] == [("contacts", "101")]
    assert sorted(imported[0]["metadata"]["include"]) == ["emails", "notes"]


def test_phone_width_keeps_everything_reachable(open_page):
    page = open_page(PAGE, viewport=PHONE)
    expect(page.locator("#profile")).to_contain_text("Strength:")
    expect(page.locator("#gallery tbody tr").first).to_be_visible()
    assert horizontal_overflow(page) <= 0
    screenshot(page, "voice-training-phone")
    # Keyboard order starts at the skip link, which moves focus past the header to the content.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"


def test_a_connected_rep_sees_their_google_account_and_can_disconnect_it(open_page, stack):
    from shared.voice.sources import google_refresh_secret

    db, secrets = stack.container.db, stack.container.secrets
    rep_id = str(db.query("UPDATE reps SET google_status = 'connected', google_connected_at = now(), "
                          "google_scopes = '{https://www.googleapis.com/auth/gmail.send}' "
                          "WHERE email = 'alex@example.com' RETURNING id")[0]["id"])
    secrets.add_version(google_refresh_secret(rep_id), b"1//a-refresh-token")
    page = open_page(PAGE)
    expect(page.locator("#google-state")).to_contain_text("Connected as alex@example.com")
    reconnect = page.get_by_role("link", name="Reconnect Google")
    expect(reconnect).to_have_attribute("href", f"{stack.url}/token-refresh/connect?rep={rep_id}")

    page.get_by_role("button", name="Disconnect Google").click()
    dialog = page.get_by_role("dialog", name="Disconnect your Google account?")
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="Disconnect Google").click()
    expect(page.locator("#status")).to_contain_text("Google disconnected")
    expect(page.locator("#google-state")).to_contain_text("Not connected")
    expect(page.get_by_role("button", name="Disconnect Google")).to_be_hidden()
    expect(page.get_by_role("link", name="Connect Google")).to_be_visible()
    status = requests.get(f"{stack.url}/token-refresh/status", headers=ALEX, timeout=30).json()
    assert status["google_status"] == "disconnected"
    assert db.query("SELECT google_status FROM reps WHERE id = %s", (rep_id,))[0]["google_status"] == "disconnected"
    from shared.ports import SecretNotFound

    with pytest.raises(SecretNotFound):
        secrets.access(google_refresh_secret(rep_id))
