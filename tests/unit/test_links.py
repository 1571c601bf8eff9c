"""``shared.voice.links.classify``: every link form people paste, and what must not pass."""

from __future__ import annotations

import base64

import pytest

from shared.errors import BadRequest, Refused
from shared.voice.links import classify, onedrive_download_url

VID = "dQw4w9WgXcQ"
DOC = "1AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"


@pytest.mark.parametrize("url", [
    f"https://www.youtube.com/watch?v={VID}",
    f"https://youtube.com/watch?v={VID}&t=42s&list=PL123",
    f"https://m.youtube.com/watch?feature=share&v={VID}",
    f"https://music.youtube.com/watch?v={VID}",
    f"http://www.youtube.com/watch?v={VID}#t=10",
    f"https://youtu.be/{VID}",
    f"https://youtu.be/{VID}?si=AbCdEf&t=3",
    f"youtu.be/{VID}",
    f"www.youtube.com/watch?v={VID}",
    f"https://www.youtube.com/shorts/{VID}",
    f"https://www.youtube.com/shorts/{VID}?feature=share",
    f"https://www.youtube.com/embed/{VID}?start=5",
    f"https://www.youtube-nocookie.com/embed/{VID}",
    f"https://www.youtube.com/live/{VID}?si=x",
    f"https://www.youtube.com/v/{VID}",
    f"  https://WWW.YOUTUBE.COM/watch?v={VID}\n",
])
def test_youtube_links_give_the_video_id(url):
    link = classify(url)
    assert (link.kind, link.ref) == ("youtube", VID)
    assert link.url.startswith("http")


@pytest.mark.parametrize("url", [
    "https://www.youtube.com/@somechannel",
    "https://www.youtube.com/playlist?list=PL1234567890",
    "https://www.youtube.com/watch?v=tooShort",
    "https://www.youtube.com/watch?v=dQw4w9WgXcQQQ",  # 13 characters
    "https://youtu.be/",
    "https://www.youtube.com/shorts/",
])
def test_youtube_links_without_one_video_are_bad_requests(url):
    with pytest.raises(BadRequest, match="one video"):
        classify(url)


@pytest.mark.parametrize("url,doc_type", [
    (f"https://docs.google.com/document/d/{DOC}/edit", "document"),
    (f"https://docs.google.com/document/d/{DOC}/edit?usp=sharing", "document"),
    (f"https://docs.google.com/document/u/1/d/{DOC}/edit#heading=h.1", "document"),
    (f"https://docs.google.com/spreadsheets/d/{DOC}/edit#gid=0", "spreadsheets"),
    (f"https://docs.google.com/presentation/d/{DOC}/edit?slide=id.p", "presentation"),
    (f"https://drive.google.com/file/d/{DOC}/view?usp=drive_link", None),
    (f"https://drive.google.com/file/u/0/d/{DOC}/view", None),
    (f"https://drive.google.com/open?id={DOC}", None),
    (f"https://drive.google.com/uc?id={DOC}&export=download", None),
    (f"https://drive.google.com/uc?export=download&id={DOC}", None),
    (f"drive.google.com/file/d/{DOC}", None),
])
def test_drive_links_give_the_file_id(url, doc_type):
    link = classify(url)
    assert (link.kind, link.ref, link.folder, link.doc_type) == ("drive", DOC, False, doc_type)


@pytest.mark.parametrize("url", [
    f"https://drive.google.com/drive/folders/{DOC}",
    f"https://drive.google.com/drive/u/0/folders/{DOC}?usp=sharing",
])
def test_drive_folder_links_are_marked_as_folders(url):
    link = classify(url)
    assert (link.kind, link.ref, link.folder) == ("drive", DOC, True)


@pytest.mark.parametrize("url", [
    "https://drive.google.com/drive/my-drive",
    "https://docs.google.com/document/d/short/edit",
    "https://drive.google.com/open?id=",
])
def test_drive_links_without_a_file_are_bad_requests(url):
    with pytest.raises(BadRequest, match="Drive"):
        classify(url)


@pytest.mark.parametrize("url,download", [
    ("https://www.dropbox.com/s/abc123/deck.pdf?dl=0", "https://www.dropbox.com/s/abc123/deck.pdf?dl=1"),
    ("https://www.dropbox.com/s/abc123/deck.pdf", "https://www.dropbox.com/s/abc123/deck.pdf?dl=1"),
    ("https://www.dropbox.com/scl/fi/xyz789/notes.docx?rlkey=k3y&dl=0",
     "https://www.dropbox.com/scl/fi/xyz789/notes.docx?rlkey=k3y&dl=1"),
    ("https://dropbox.com/scl/fi/xyz789/notes.docx?rlkey=k3y&st=abc&raw=1",
     "https://dropbox.com/scl/fi/xyz789/notes.docx?rlkey=k3y&st=abc&dl=1"),
    ("https://dl.dropboxusercontent.com/s/abc123/deck.pdf", "https://dl.dropboxusercontent.com/s/abc123/deck.pdf"),
])
def test_dropbox_links_become_direct_downloads(url, download):
    link = classify(url)
    assert (link.kind, link.download_url) == ("dropbox", download)


@pytest.mark.parametrize("url", [
    "https://1drv.ms/w/s!AkD2EXAMPLEabc?e=Xy12",
    "https://1drv.ms/b/c/abc123/EXAMPLE",
    "https://onedrive.live.com/redir?resid=1231244193912!12&authkey=1201919!12921!1",
    "https://onedrive.live.com/?cid=ABC&id=ABC%21123&authkey=%21XYZ",
])
def test_onedrive_links_use_the_shares_api_encoding(url):
    link = classify(url)
    assert link.kind == "onedrive"
    prefix = "https://api.onedrive.com/v1.0/shares/u!"
    assert link.download_url.startswith(prefix) and link.download_url.endswith("/root/content")
    token = link.download_url[len(prefix):-len("/root/content")]
    assert "=" not in token and "/" not in token and "+" not in token
    assert base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode() == url


def test_onedrive_encoding_matches_microsofts_example():
    # The sharing URL of Microsoft's "Encoding sharing URLs" example, base64url without padding.
    url = "https://onedrive.live.com/redir?resid=1231244193912!12&authKey=1201919!12921!1"
    expected = base64.b64encode(url.encode()).decode().rstrip("=").replace("/", "_").replace("+", "-")
    assert onedrive_download_url(url) == f"https://api.onedrive.com/v1.0/shares/u!{expected}/root/content"


def test_sharepoint_share_links_take_download_1():
    link = classify("https://contoso-my.sharepoint.com/:w:/g/personal/alex/EaBcD?e=4hY")
    assert link.kind == "onedrive"
    assert link.download_url == "https://contoso-my.sharepoint.com/:w:/g/personal/alex/EaBcD?e=4hY&download=1"


@pytest.mark.parametrize("url,download", [
    ("https://app.box.com/s/abc123xyz", "https://app.box.com/shared/static/abc123xyz"),
    ("https://contoso.app.box.com/s/abc123xyz?page=2", "https://contoso.app.box.com/shared/static/abc123xyz"),
    ("https://app.box.com/shared/static/abc123xyz.pdf", "https://app.box.com/shared/static/abc123xyz.pdf"),
])
def test_box_links_become_static_downloads(url, download):
    link = classify(url)
    assert (link.kind, link.download_url) == ("box", download)


def test_box_links_that_are_not_shared_links_are_bad_requests():
    with pytest.raises(BadRequest, match="Box"):
        classify("https://app.box.com/folder/0")


@pytest.mark.parametrize("url,ref", [
    ("https://app.hubspot.com/contacts/1234567/record/0-1/451", "contacts/451"),
    ("https://app.hubspot.com/contacts/1234567/record/0-2/88/view/1", "companies/88"),
    ("https://app.hubspot.com/contacts/1234567/record/0-3/9001", "deals/9001"),
    ("https://app-eu1.hubspot.com/contacts/1234567/record/0-1/451", "contacts/451"),
    ("https://app.hubspot.com/contacts/1234567/contact/451", "contacts/451"),
    ("https://app.hubspot.com/contacts/1234567/company/88/", "companies/88"),
    ("https://app.hubspot.com/contacts/1234567/deal/9001?tab=activity", "deals/9001"),
])
def test_hubspot_record_links(url, ref):
    link = classify(url)
    assert (link.kind, link.ref) == ("hubspot", ref)
    assert link.hubspot == tuple(ref.split("/"))


@pytest.mark.parametrize("url", [
    "https://app.hubspot.com/contacts/1234567/objects/0-1/views/all/list",
    "https://app.hubspot.com/contacts/1234567/record/0-5/12",  # tickets are not imported
    "https://app.hubspot.com/reports-dashboard/1234567",
])
def test_hubspot_links_without_a_record_are_bad_requests(url):
    with pytest.raises(BadRequest, match="HubSpot"):
        classify(url)


@pytest.mark.parametrize("url", [
    "https://example.com/blog/how-we-sell",
    "http://example.com",
    "example.com/page?x=1",
    "https://docs.example.com/document/d/" + DOC,  # not Google
    "https://youtube.com.evil.example/watch?v=" + VID,  # not YouTube
    "https://evil.example/?u=https://www.youtube.com/watch?v=" + VID,
    "https://notdropbox.com/s/abc/file.pdf?dl=0",
    "https://hubspot.com/contacts/1/record/0-1/2",  # the marketing site, not the app
    # Internal targets are still links: the fetcher refuses them when it is asked to fetch.
    "http://127.0.0.1/admin",
    "http://169.254.169.254/computeMetadata/v1/",
    "localhost:8080/x",
    "http://[::1]/",
])
def test_other_links_are_web_pages(url):
    link = classify(url)
    assert (link.kind, link.ref, link.download_url) == ("web", None, None)


@pytest.mark.parametrize("url", [
    "javascript:alert(1)",
    "JavaScript:alert(1)",
    "file:///etc/passwd",
    "ftp://example.com/file.pdf",
    "gopher://127.0.0.1:70/_x",
    "data:text/html;base64,PHNjcmlwdD4=",
    "mailto:alex@example.com",
    "vbscript:msgbox",
])
def test_other_schemes_are_refused(url):
    with pytest.raises(Refused, match="http and https"):
        classify(url)


@pytest.mark.parametrize("junk", [
    "", "   ", "hello world", "not a link", "just-text", "https://", "http:///path", "//",
    "https://exa mple.com/", "12345", None, 42,
])
def test_junk_is_a_bad_request(junk):
    with pytest.raises(BadRequest):
        classify(junk)
