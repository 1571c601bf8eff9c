"""Contract tests of the voice-training source ports: each production adapter through its real client
library against a loopback stand-in, and the embedded adapters."""

from __future__ import annotations

import logging
import types

import pytest

from shared.adapters.google_drive import GoogleDrive, UnavailableDrive
from shared.adapters.hubspot_crm import HubSpotCrm, SandboxCrm
from shared.adapters.local_secrets import LocalSecretStore
from shared.adapters.youtube import TimeoutSession, YouTubeTranscripts
from shared.errors import (
    BadRequest,
    DependencyDown,
    Forbidden,
    NotFound,
    PermanentError,
    RateLimited,
    Refused,
    RetryableError,
    TooLarge,
    UnsupportedType,
)
from shared.voice.links import fetch_source, search_hubspot
from shared.voice.sources import CrmReader, DriveSource, TranscriptSource, google_refresh_secret
from tests.standins.google import CLIENT_ID, CLIENT_SECRET, DriveItem
from tests.standins.hubspot import ACCESS_TOKEN
from tests.standins.youtube import Video

VID = "abcDEF12345"
CUES = [(0.0, 1.5, "Hi, I'm Alex."), (1.5, 2.0, "[Music] Thanks for joining."),
        (9.0, 2.0, "Let's talk pricing.")]


# --- YouTube -------------------------------------------------------------------------------------


@pytest.fixture
def transcripts(youtube_standin) -> YouTubeTranscripts:
    return YouTubeTranscripts(youtube_standin.session())


def test_youtube_adapter_implements_the_port(transcripts):
    assert isinstance(transcripts, TranscriptSource)


def test_captions_become_paragraphs_of_plain_text(youtube_standin, transcripts):
    youtube_standin.add_video(VID, Video(tracks={"en": ("English", False, CUES)}))
    got = transcripts.transcript(VID)
    assert got.text == "Hi, I'm Alex. Thanks for joining.\n\nLet's talk pricing."
    assert (got.language, got.is_generated) == ("en", False)
    paths = [(r.method, r.path, r.headers["host"]) for r in youtube_standin.requests]
    assert paths == [("GET", "/watch", "www.youtube.com"), ("POST", "/youtubei/v1/player", "www.youtube.com"),
                     ("GET", "/api/timedtext", "www.youtube.com")]


def test_uploaded_captions_win_and_regional_variants_count(youtube_standin, transcripts):
    youtube_standin.add_video(VID, Video(tracks={"en-GB": ("English (UK)", False, CUES[:1]),
                                                 "de": ("German", False, [(0, 1, "Hallo")])}))
    got = transcripts.transcript(VID, languages=("en",))
    assert (got.language, got.text) == ("en-GB", "Hi, I'm Alex.")


@pytest.mark.parametrize("state,error,words", [
    ("no_captions", PermanentError, "Captions are turned off"),
    ("private", PermanentError, "This video is private"),
    ("removed", NotFound, "unavailable"),
    ("age_restricted", PermanentError, "age-restricted"),
    ("bot_check", RateLimited, "too many requests"),
])
def test_unusable_videos_raise_a_clear_error(youtube_standin, transcripts, state, error, words):
    youtube_standin.add_video(VID, Video(state=state, tracks={"en": ("English", False, CUES)}))
    with pytest.raises(error, match=words) as caught:
        transcripts.transcript(VID)
    assert not isinstance(caught.value, RetryableError) or error is RateLimited


def test_no_captions_in_the_language_names_the_ones_there_are(youtube_standin, transcripts):
    youtube_standin.add_video(VID, Video(tracks={"de": ("German", True, [(0, 1, "Hallo")])}))
    with pytest.raises(PermanentError, match=r"no captions in en.*German \(de\)") as caught:
        transcripts.transcript(VID)
    assert caught.value.code == "no_captions"


def test_too_many_requests_is_rate_limited(youtube_standin, transcripts):
    youtube_standin.fail_next(429, "Too Many Requests", path="/watch")
    with pytest.raises(RateLimited, match="too many requests"):
        transcripts.transcript(VID)


def test_a_recaptcha_page_is_rate_limited(youtube_standin, transcripts):
    youtube_standin.blocked = True
    with pytest.raises(RateLimited):
        transcripts.transcript(VID)


def test_youtube_server_errors_are_retryable(youtube_standin, transcripts):
    youtube_standin.add_video(VID, Video(tracks={"en": ("English", False, CUES)}))
    youtube_standin.fail_next(503, "unavailable", path="/youtubei/")
    with pytest.raises(DependencyDown, match="503"):
        transcripts.transcript(VID)


def test_offline_is_a_clear_retryable_error():
    # Nothing listens on port 9 of loopback: the connection is refused, as it is with no network.
    from tests.standins.youtube import RerouteAdapter

    session = TimeoutSession(2.0)
    session.mount("https://www.youtube.com/", RerouteAdapter("http://127.0.0.1:9"))
    with pytest.raises(DependencyDown, match="Could not reach YouTube"):
        YouTubeTranscripts(session).transcript(VID)


def test_a_malformed_video_id_is_refused_before_any_request(youtube_standin, transcripts):
    with pytest.raises(BadRequest):
        transcripts.transcript("../../etc")
    assert youtube_standin.requests == []


# --- Google Drive ------------------------------------------------------------------------------------

DOC_ID = "1DocDocDocDocDocDoc"
REP = 7


@pytest.fixture
def secrets(tmp_path) -> LocalSecretStore:
    return LocalSecretStore(tmp_path / "secrets")


@pytest.fixture
def drive(google_standin, secrets) -> GoogleDrive:
    return GoogleDrive(secrets, client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                       token_uri=google_standin.base_url + "/token", api_base_url=google_standin.base_url,
                       max_bytes=64 * 1024, timeout=5)


@pytest.fixture
def connected(google_standin, secrets) -> str:
    token = google_standin.grant("rep")
    secrets.add_version(google_refresh_secret(REP), token.encode())
    return token


def test_drive_adapters_implement_the_port(drive):
    assert isinstance(drive, DriveSource) and isinstance(UnavailableDrive(), DriveSource)


def test_a_google_doc_is_exported_as_plain_text(google_standin, drive, connected):
    google_standin.add(DriveItem(DOC_ID, "Call script", "application/vnd.google-apps.document",
                                 exports={"text/plain": "\ufeffHi there,\r\nShort and sweet.".encode()}))
    got = drive.get_file(REP, DOC_ID)
    assert (got.name, got.mime_type, got.data) == ("Call script", "text/plain", None)
    assert got.text == "Hi there,\r\nShort and sweet."
    export = google_standin.requests_to(r"/export$")[0]
    assert export.query["mimeType"] == "text/plain" and export.query["supportsAllDrives"] == "true"
    token_calls = google_standin.requests_to(r"^/token$")
    assert len(token_calls) == 1 and token_calls[0].form()["grant_type"] == "refresh_token"


def test_a_sheet_is_exported_as_csv(google_standin, drive, connected):
    google_standin.add(DriveItem(DOC_ID, "Pricing", "application/vnd.google-apps.spreadsheet",
                                 exports={"text/csv": b"plan,price\nteam,49\n"}))
    got = drive.get_file(REP, DOC_ID)
    assert (got.mime_type, got.text) == ("text/csv", "plan,price\nteam,49\n")


def test_a_pdf_is_downloaded_as_bytes(google_standin, drive, connected):
    pdf = b"%PDF-1.7\n" + b"x" * 2000
    google_standin.add(DriveItem(DOC_ID, "deck.pdf", "application/pdf", content=pdf))
    got = drive.get_file(REP, DOC_ID)
    assert (got.data, got.text, got.mime_type) == (pdf, None, "application/pdf")
    assert google_standin.requests_to(rf"^/drive/v3/files/{DOC_ID}$")[-1].query["alt"] == "media"


def test_a_file_over_the_cap_is_too_large_before_download(google_standin, drive, connected):
    google_standin.add(DriveItem(DOC_ID, "huge.pdf", "application/pdf", content=b"%PDF" + b"x" * 70_000))
    with pytest.raises(TooLarge, match="huge.pdf"):
        drive.get_file(REP, DOC_ID)
    assert all(r.query.get("alt") != "media" for r in google_standin.requests)


def test_a_file_the_rep_cannot_read_is_not_found(google_standin, drive, connected):
    google_standin.add(DriveItem(DOC_ID, "secret.pdf", "application/pdf", content=b"%PDF", owner="someone-else"))
    with pytest.raises(NotFound, match="cannot open it"):
        drive.get_file(REP, DOC_ID)


def test_drive_forbidden_and_rate_limits(google_standin, drive, connected):
    google_standin.add(DriveItem(DOC_ID, "deck.pdf", "application/pdf", content=b"%PDF"))
    google_standin.fail_next(403, {"error": {"code": 403, "message": "Rate Limit Exceeded", "errors": [
        {"reason": "userRateLimitExceeded", "message": "Rate Limit Exceeded"}]}}, path="/drive/")
    with pytest.raises(RateLimited):
        drive.get_file(REP, DOC_ID)
    google_standin.fail_next(403, {"error": {"code": 403, "message": "no", "errors": [
        {"reason": "insufficientFilePermissions", "message": "no"}]}}, path="/drive/")
    with pytest.raises(Forbidden, match="not allowed"):
        drive.get_file(REP, DOC_ID)
    google_standin.fail_next(503, {"error": {"code": 503, "message": "backend"}}, path="/drive/")
    with pytest.raises(DependencyDown):
        drive.get_file(REP, DOC_ID)


def test_google_forms_and_folders_are_unsupported(google_standin, drive, connected):
    google_standin.add(DriveItem(DOC_ID, "Survey", "application/vnd.google-apps.form"))
    with pytest.raises(UnsupportedType, match="Form"):
        drive.get_file(REP, DOC_ID)


def test_folder_listing_is_bounded_and_pages(google_standin, drive, connected):
    folder = "1FolderFolderFolder"
    for n in range(130):
        google_standin.add(DriveItem(f"1File{n:04d}xxxxxxx", f"note {n:03d}.txt", "text/plain", parents=(folder,)))
    google_standin.add(DriveItem("1Elsewhere00000000", "other.txt", "text/plain", parents=("1OtherFolder0000",)))
    google_standin.add(DriveItem("1Trashed000000000", "gone.txt", "text/plain", parents=(folder,), trashed=True))
    got = drive.list_folder(REP, folder, limit=120)
    assert len(got) == 120 and got[0].name == "note 000.txt"
    assert len({e.id for e in got}) == 120
    lists = google_standin.requests_to(r"^/drive/v3/files$")
    assert [r.query["pageSize"] for r in lists] == ["100", "20"]
    assert lists[0].query["q"] == f"'{folder}' in parents and trashed = false"


def test_a_folder_id_cannot_inject_into_the_query(drive, connected):
    with pytest.raises(BadRequest):
        drive.list_folder(REP, "x' or 'a' in parents or '1234567890")


def test_a_revoked_grant_asks_the_rep_to_reconnect(google_standin, drive, connected):
    google_standin.add(DriveItem(DOC_ID, "deck.pdf", "application/pdf", content=b"%PDF"))
    google_standin.revoke(connected)
    with pytest.raises(Refused, match="Reconnect your Google account") as caught:
        drive.get_file(REP, DOC_ID)
    assert caught.value.code == "google_reconnect"


def test_no_google_connection_says_to_connect(google_standin, drive):
    with pytest.raises(Refused, match="Connect your Google account on the voice-training page") as caught:
        drive.get_file(REP, DOC_ID)
    assert caught.value.code == "google_not_connected"
    assert google_standin.requests == []


def test_the_embedded_drive_says_to_connect_a_google_account():
    for call in (lambda d: d.get_file(1, DOC_ID), lambda d: d.list_folder(1, DOC_ID)):
        with pytest.raises(Refused, match="Connect your Google account") as caught:
            call(UnavailableDrive())
        assert caught.value.code == "google_not_connected"


def test_no_token_reaches_the_logs(google_standin, drive, connected, caplog):
    caplog.set_level(logging.DEBUG)
    google_standin.add(DriveItem(DOC_ID, "deck.pdf", "application/pdf", content=b"%PDF"))
    drive.get_file(REP, DOC_ID)
    issued = list(google_standin.access_tokens)
    assert issued and not any(t in caplog.text for t in [connected, *issued])


# --- CRM ---------------------------------------------------------------------------------------------


@pytest.fixture(params=["hubspot", "sandbox"])
def crm(request, tmp_path):
    if request.param == "sandbox":
        return SandboxCrm(tmp_path)
    standin = request.getfixturevalue("hubspot_standin")
    return HubSpotCrm(ACCESS_TOKEN, host=standin.base_url, timeout=5)


def test_crm_adapters_implement_the_port(crm):
    assert isinstance(crm, CrmReader)


def test_search_finds_records_by_name_email_or_domain(crm):
    assert [r.id for r in crm.search("contacts", "jordan")] == ["101"]
    assert [r.label for r in crm.search("contacts", "priya@contoso")] == ["Priya Shah"]
    assert [(r.id, r.label) for r in crm.search("companies", "northwind")] == [("201", "Northwind Traders")]
    assert [r.id for r in crm.search("deals", "pilot")] == ["302"]
    assert crm.search("contacts", "nobody-by-that-name") == []
    assert crm.search("contacts", "   ") == []


@pytest.mark.parametrize("object_type,object_id,kinds", [
    ("contacts", "101", {"note", "email", "call"}),
    ("companies", "201", {"note", "email", "call"}),
    ("deals", "301", {"note", "call"}),
])
def test_engagements_of_a_record_newest_first(crm, object_type, object_id, kinds):
    got = crm.engagements(object_type, object_id)
    assert {e.kind for e in got} == kinds
    assert [e.created_at for e in got] == sorted((e.created_at for e in got), reverse=True)
    assert all(e.text and "<p>" not in e.text for e in got)


def test_engagement_text_and_direction(crm):
    got = {e.id: e for e in crm.engagements("contacts", "101")}
    assert got["501"].outgoing is True and got["501"].title == "Quick follow-up on reorders"
    assert got["501"].text.startswith("Hi Jordan,\n\nThanks for the time yesterday.")
    assert got["502"].outgoing is False
    assert got["601"].kind == "call" and got["601"].title == "Discovery call"
    assert got["401"].text.startswith("Jordan's team is drowning")


def test_include_limits_the_kinds(crm):
    assert {e.kind for e in crm.engagements("contacts", "101", include=["notes"])} == {"note"}
    with pytest.raises(BadRequest):
        crm.engagements("contacts", "101", include=["tasks"])


def test_engagement_counts(crm):
    assert crm.engagement_counts("contacts", "101") == {"notes": 1, "emails": 2, "calls": 1}


def test_a_missing_record_is_not_found(crm):
    with pytest.raises(NotFound, match="no such contact"):
        crm.engagements("contacts", "999999")
    with pytest.raises(NotFound):
        crm.get("deals", "424242")


def test_bad_object_types_and_ids_are_bad_requests(crm):
    with pytest.raises(BadRequest):
        crm.search("tickets", "x")
    with pytest.raises(BadRequest):
        crm.get("contacts", "1 OR 1=1")


def test_hubspot_rate_limit_and_outage(hubspot_standin):
    crm = HubSpotCrm(ACCESS_TOKEN, host=hubspot_standin.base_url, timeout=5)
    hubspot_standin.rate_limit_next()
    with pytest.raises(RateLimited, match="HubSpot is limiting"):
        crm.search("contacts", "jordan")
    hubspot_standin.fail_next(502, {"status": "error", "message": "Bad gateway"})
    with pytest.raises(DependencyDown, match="502"):
        crm.get("contacts", "101")
    assert [r.id for r in crm.search("contacts", "jordan")] == ["101"]  # and then it works again


def test_hubspot_requests_carry_the_token_and_use_the_documented_routes(hubspot_standin):
    crm = HubSpotCrm(ACCESS_TOKEN, host=hubspot_standin.base_url, timeout=5)
    crm.engagements("contacts", "101", include=["notes"])
    routes = [(r.method, r.path) for r in hubspot_standin.requests]
    assert routes == [("GET", "/crm/v3/objects/contacts/101"),
                      ("GET", "/crm/v4/objects/contacts/101/associations/notes"),
                      ("POST", "/crm/v3/objects/notes/batch/read")]
    assert all(r.headers["authorization"] == f"Bearer {ACCESS_TOKEN}" for r in hubspot_standin.requests)
    read = hubspot_standin.requests[-1].json()
    assert read["inputs"] == [{"id": "401"}] and "hs_note_body" in read["properties"]


def test_hubspot_down_is_retryable():
    crm = HubSpotCrm(ACCESS_TOKEN, host="http://127.0.0.1:9", timeout=2)
    with pytest.raises(DependencyDown, match="Could not reach HubSpot"):
        crm.search("contacts", "jordan")


def test_the_sandbox_keeps_its_records_in_the_data_dir(tmp_path):
    SandboxCrm(tmp_path).search("contacts", "jordan")
    assert (tmp_path / "crm" / "sandbox.json").is_file()
    assert [r.id for r in SandboxCrm(tmp_path).search("contacts", "jordan")] == ["101"]


# --- fetch_source across the ports --------------------------------------------------------------------


def _deps(**ports):
    base = {"fetcher": None, "transcripts": None, "drive": UnavailableDrive(), "crm": None}
    base.update(ports)
    return types.SimpleNamespace(**base)


def test_fetch_source_youtube_link(youtube_standin, transcripts):
    youtube_standin.add_video(VID, Video(tracks={"en": ("English", True, CUES)}))
    got = fetch_source({"source_type": "url", "source_url": f"https://youtu.be/{VID}?t=3", "rep_id": 1},
                       _deps(transcripts=transcripts))
    assert got.data is None and got.text.startswith("Hi, I'm Alex.")
    assert got.metadata == {"source": "youtube", "video_id": VID, "language": "en", "captions": "automatic"}


def test_fetch_source_hubspot_record_keeps_only_the_reps_words(tmp_path):
    got = fetch_source({"source_type": "hubspot", "metadata": {"object_type": "contacts", "object_id": "101",
                                                                "include": ["notes", "emails", "calls"]},
                        "rep_id": 1}, _deps(crm=SandboxCrm(tmp_path)))
    assert got.title == "HubSpot: Jordan Lee" and got.content_type == "text/plain"
    assert "Thursday works" not in got.text  # the contact's reply is not the rep's voice
    assert "Quick follow-up on reorders\n\nHi Jordan," in got.text
    assert got.metadata["counts"] == {"note": 1, "email": 1, "call": 1}
    assert got.metadata["skipped_incoming"] == 1


def test_fetch_source_hubspot_link(tmp_path):
    got = fetch_source({"source_type": "url", "source_url": "https://app.hubspot.com/contacts/1/record/0-3/301"},
                       _deps(crm=SandboxCrm(tmp_path)))
    assert got.metadata["object_type"] == "deals" and "pricing approved" in got.text


def test_fetch_source_drive_without_connection_says_to_connect(tmp_path):
    with pytest.raises(Refused, match="Connect your Google account"):
        fetch_source({"source_type": "drive", "source_id": DOC_ID, "rep_id": 1}, _deps())


def test_fetch_source_drive_file(google_standin, drive, connected):
    google_standin.add(DriveItem(DOC_ID, "Call script", "application/vnd.google-apps.document",
                                 exports={"text/plain": b"Hello"}))
    got = fetch_source({"source_type": "url", "source_url": f"https://docs.google.com/document/d/{DOC_ID}/edit",
                        "rep_id": REP}, _deps(drive=drive))
    assert (got.text, got.filename, got.data) == ("Hello", "Call script.txt", None)


def test_fetch_source_share_link_goes_through_the_fetcher_in_download_form():
    from shared.ports import FetchedPage

    asked = []

    class Recording:
        def fetch(self, url, **kwargs):
            asked.append(url)
            return FetchedPage(url=url, status=200, content_type="application/pdf", body=b"%PDF-1.7",
                               headers={"content-disposition": 'attachment; filename="deck.pdf"'})

    got = fetch_source({"source_type": "url", "source_url": "https://www.dropbox.com/s/abc/deck.pdf?dl=0"},
                       _deps(fetcher=Recording()))
    assert asked == ["https://www.dropbox.com/s/abc/deck.pdf?dl=1"]
    assert (got.data, got.filename, got.content_type) == (b"%PDF-1.7", "deck.pdf", "application/pdf")


def test_fetch_source_web_link_to_a_private_address_is_refused_by_the_safe_fetcher(canary):
    from shared.adapters.web_fetch import SafeFetcher

    with pytest.raises(Refused):
        fetch_source({"source_type": "url", "source_url": f"http://127.0.0.1:{canary.port}/x"},
                     _deps(fetcher=SafeFetcher(timeout=2)))
    assert canary.hits == []


def test_search_hubspot_for_the_record_selector(tmp_path):
    got = search_hubspot(_deps(crm=SandboxCrm(tmp_path)), "northwind")
    assert {(r["object_type"], r["id"]) for r in got} == {("contacts", "101"), ("companies", "201"),
                                                           ("deals", "301")}
    assert set(got[0]) == {"id", "object_type", "label", "subtitle"}
    assert search_hubspot(_deps(crm=SandboxCrm(tmp_path)), "n") == []

