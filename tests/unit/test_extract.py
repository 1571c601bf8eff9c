"""Extraction of every accepted kind from real files, and hostile files ending as clear permanent errors."""

from __future__ import annotations

import os
import resource

import pypdf
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.errors import PermanentError, TooLarge, UnsupportedType
from shared.voice import extract as extraction
from shared.voice.extract import Extracted, Limits, extract, extract_limited, html_to_text, strip_markdown
from shared.voice.sandbox import run_limited
from tests import builders

REP = {"rep_name": "Alex Rivera", "rep_email": "alex@example.com"}
SANDBOX = {"timeout_s": 20, "memory_mb": 256}


def sandboxed(data: bytes, **kwargs) -> Extracted:
    return run_limited(extract, data, **kwargs, **SANDBOX)


def virtual_size() -> int:
    with open("/proc/self/statm", "rb") as statm:
        return int(statm.read().split()[0]) * resource.getpagesize()


# --- PDF ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def long_pdf() -> bytes:
    return builders.pdf([f"Marker {index:03d}. Page {index + 1} of the playbook says hello." for index in range(200)])


def test_pdf_text_comes_page_by_page_with_counts():
    result = extract(builders.pdf(["First page speaks.", "Second page answers."]), filename="deck.pdf")
    assert result.kind == "pdf"
    assert result.text == "First page speaks.\n\nSecond page answers."
    assert result.metadata["pages"] == 2 and result.metadata["pages_without_text"] == 0


def test_a_200_page_pdf_is_read_whole(long_pdf):
    result = extract(long_pdf)
    assert result.metadata["pages"] == result.metadata["pages_read"] == 200
    assert "Marker 000." in result.text and "Marker 199." in result.text
    assert result.text.count("Marker") == 200


def test_pages_past_the_cap_are_counted_not_read(long_pdf):
    result = extract(long_pdf, limits=Limits(pdf_max_pages=50))
    assert "Marker 049." in result.text and "Marker 050." not in result.text
    assert result.metadata["pages"] == 200 and result.metadata["pages_read"] == 50
    assert "Only the first 50 of 200 pages were read." in result.metadata["note"]


def test_a_page_without_a_text_layer_is_reported_and_ocr_is_said_unavailable(monkeypatch):
    monkeypatch.setattr(extraction.shutil, "which", lambda name: None)
    result = extract(builders.pdf(["Words on page one.", "", "Words on page three."], textless=[1]))
    assert result.text == "Words on page one.\n\nWords on page three."
    assert result.metadata["pages_without_text"] == 1
    assert result.metadata["pages_without_text_list"] == [2]
    assert result.metadata["ocr"] == "unavailable"
    assert "1 of 3 pages had no text layer" in result.metadata["note"]
    assert "OCR is not available" in result.metadata["note"]


def test_ocr_availability_follows_tesseract_on_the_path(monkeypatch):
    monkeypatch.setattr(extraction.shutil, "which", lambda name: "/usr/bin/tesseract" if name == "tesseract" else None)
    result = extract(builders.pdf(["Words.", ""], textless=[1]))
    assert result.metadata["ocr"] == "available"


def test_a_pdf_with_no_text_layer_at_all_is_a_permanent_error(monkeypatch):
    monkeypatch.setattr(extraction.shutil, "which", lambda name: None)
    with pytest.raises(PermanentError, match="no text layer on any of its 2 pages") as caught:
        extract(builders.pdf(["", ""], textless=[0, 1]))
    assert "OCR is not available" in caught.value.message
    assert caught.value.code == "no_text"


def test_an_owner_password_alone_does_not_stop_reading():
    assert extract(builders.pdf(["Protected but readable."], owner_password="owner")).text == "Protected but readable."


def test_a_pdf_that_needs_a_password_is_refused_with_advice():
    data = builders.pdf(["Secret."], owner_password="owner", user_password="user")
    with pytest.raises(PermanentError, match="protected by a password") as caught:
        extract(data)
    assert caught.value.code == "encrypted"


def test_pypdf_limits_apply_only_during_extraction():
    extract(builders.pdf(["Anything."]))
    assert pypdf.get_configuration() == pypdf.Configuration()


@pytest.mark.parametrize("cut", [0.5, 0.9])
def test_a_truncated_pdf_is_a_permanent_error(cut):
    data = builders.pdf(["Some text here."] * 3)
    with pytest.raises(PermanentError, match="damaged or incomplete") as caught:
        sandboxed(data[: int(len(data) * cut)])
    assert caught.value.code == "damaged_file"


@pytest.mark.parametrize("size_mib", [32, 1024])
def test_a_pdf_decompression_bomb_is_stopped_by_the_stream_limit(size_mib):
    # 32 MiB passes pypdf's own default (75 MB) and is stopped only by the limit set here.
    bomb = builders.pdf_bomb(size_mib)
    assert len(bomb) < 2 * 1024 * 1024
    with pytest.raises(PermanentError, match="expand far beyond its size") as caught:
        sandboxed(bomb)
    assert caught.value.code == "hostile_file"


def test_without_the_stream_limit_the_sandbox_memory_cap_still_holds_the_bomb():
    limits = Limits(pdf_max_stream_bytes=1 << 40)  # as if pypdf had no limit of its own
    with pytest.raises(PermanentError, match="too much memory") as caught:
        sandboxed(builders.pdf_bomb(1024), limits=limits)
    assert caught.value.code == "out_of_memory"
    # No child of this process ever came near the 1 GiB the bomb holds.
    peak_child_bytes = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    assert peak_child_bytes < virtual_size() + SANDBOX["memory_mb"] * 1024 * 1024


def test_a_self_referencing_page_tree_is_a_permanent_error():
    with pytest.raises(PermanentError, match="refers back to itself"):
        sandboxed(builders.pdf_page_tree_loop())


def test_a_form_that_draws_itself_is_read_once():
    result = sandboxed(builders.pdf_form_loop())
    assert result.text == "Outside the form.\nInside the form."


def test_absurdly_deep_nesting_is_a_permanent_error():
    with pytest.raises(PermanentError, match="damaged|refers back"):
        sandboxed(builders.pdf_deep_nesting(200_000))


# --- DOCX -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def word_document() -> bytes:
    return builders.docx(
        ["Hi team,", "Here is the plan for Q3."],
        table=[["Account", "Owner"], ["Acme", "Alex"]],
        header="Example Co — internal",
        footer="Page footer text",
        after_table=["Questions welcome."],
    )


def test_docx_text_keeps_reading_order_with_tables_headers_and_footers(word_document):
    result = extract(word_document, filename="plan.docx")
    assert result.kind == "docx"
    assert result.text.split("\n") == [
        "Example Co — internal", "Hi team,", "Here is the plan for Q3.", "Account | Owner", "Acme | Alex",
        "Questions welcome.", "Page footer text",
    ]
    assert result.metadata["tables"] == 1 and result.metadata["headers"] == 1 and result.metadata["footers"] == 1


def test_merged_table_cells_are_read_once():
    import io

    import docx

    document = docx.Document()
    table = document.add_table(rows=2, cols=3)
    merged = table.cell(0, 0).merge(table.cell(0, 2))
    merged.text = "Quarterly summary"
    for cell, value in zip(table.rows[1].cells, ["Q1", "Q2", "Q3"]):
        cell.text = value
    out = io.BytesIO()
    document.save(out)
    assert extract(out.getvalue()).text == "Quarterly summary\nQ1 | Q2 | Q3"


def test_a_docx_zip_bomb_is_refused_from_its_directory_before_decompressing():
    bomb = builders.docx_zip_bomb(64)
    with pytest.raises(PermanentError, match="zip bomb") as caught:
        sandboxed(bomb)
    assert caught.value.code == "hostile_file"


def test_a_docx_that_would_expand_past_the_total_cap_is_refused(word_document):
    with pytest.raises(PermanentError, match="would expand to") as caught:
        extract(word_document, limits=Limits(docx_max_total_bytes=10_000))
    assert caught.value.code == "hostile_file"


def test_a_docx_with_too_many_entries_is_refused():
    with pytest.raises(PermanentError, match="1002 entries, more than the 1000") as caught:
        sandboxed(builders.docx_many_entries(1000))
    assert caught.value.code == "too_many_entries"


def test_a_docx_that_lies_about_its_sizes_is_stopped_by_the_declared_size(word_document):
    # The directory claims 2 KB for a part that really inflates to 64 MiB: zipfile stops at the
    # declared size and the checksum then fails, so memory stays bounded.
    liar = builders.with_declared_size(builders.docx_zip_bomb(64), "word/document.xml", 2048)
    with pytest.raises(PermanentError, match="damaged or incomplete"):
        sandboxed(liar)


def test_an_encrypted_docx_is_refused(word_document):
    with pytest.raises(PermanentError, match="encrypted") as caught:
        extract(builders.set_encrypted_flag(word_document))
    assert caught.value.code == "encrypted"


def test_a_truncated_docx_is_a_permanent_error(word_document):
    with pytest.raises(PermanentError, match="damaged or incomplete") as caught:
        sandboxed(word_document[: len(word_document) * 2 // 3])
    assert not isinstance(caught.value, UnsupportedType)


def test_a_docx_with_broken_xml_is_a_permanent_error():
    broken = builders.zip_bytes({"[Content_Types].xml": builders.DOCX_TYPES, "word/document.xml": b"<w:document><"})
    with pytest.raises(PermanentError, match="damaged or incomplete"):
        extract(broken)


def test_a_docx_without_text_says_so():
    with pytest.raises(PermanentError, match="Word document contains no text"):
        extract(builders.docx(["", "   "]))


# --- Text, Markdown, HTML -------------------------------------------------------------------------


def test_plain_text_is_tidied_not_rewritten():
    data = "Hi Jordan,\r\n\r\n\r\n\r\nQuick   note\u00a0about caf\u0065\u0301.\u200b\r\n".encode("utf-16")
    result = extract(data)
    assert result.kind == "text"
    assert result.text == "Hi Jordan,\n\nQuick note about caf\u00e9."


def test_markdown_keeps_the_words_and_drops_the_markup():
    source = (b"# Outreach notes\n\nAlways **lead with value** and _keep it short_. See [our guide](https://x.y/g).\n\n"
              b"- first point\n- second point\n\n> A quoted line\n\n```\ncode stays\n```\n\n| a | b |\n|---|---|\n"
              b"| 1 | 2 |\n\nsnake_case_names stay.\n")
    result = extract(source, filename="notes.md")
    assert result.kind == "markdown"
    assert result.text == ("Outreach notes\n\nAlways lead with value and keep it short. See our guide.\n\n"
                           "first point\nsecond point\n\nA quoted line\n\ncode stays\n\na b\n\n1 2\n\n"
                           "snake_case_names stay.")


def test_strip_markdown_keeps_image_alt_text_and_reference_links():
    assert strip_markdown("![Team photo](t.png) and [docs][1]\n\n[1]: https://x.y") == "Team photo and docs\n\n"


def test_html_keeps_the_main_text_only():
    page = b"""<!DOCTYPE html><html><head><title>How we sell</title><style>p{color:red}</style></head><body>
    <nav><a href="/">Home</a><a href="/pricing">Pricing</a></nav>
    <header><h1>Example Co</h1></header>
    <div role="navigation">Breadcrumbs</div>
    <main><h1>Listen first</h1><p>We listen first &amp; pitch second.</p>
      <aside>Related posts</aside><form><label>Email</label><input name=e></form>
      <script>document.write("<p>injected</p>")</script><p>Short emails win.</p></main>
    <footer>&copy; 2024 Example Co</footer></body></html>"""
    result = extract(page)
    assert result.kind == "html"
    assert result.text == "Listen first\n\nWe listen first & pitch second.\n\nShort emails win."
    assert result.metadata["title"] == "How we sell"


def test_html_without_main_uses_the_body_minus_chrome():
    page = b"<html><body><nav>Menu</nav><p>One.</p><div>Two<br>Three</div><footer>Foot</footer></body></html>"
    assert extract(page).text == "One.\n\nTwo\nThree"


def test_html_whose_only_text_is_in_the_header_still_gives_it():
    assert extract(b"<html><body><header><p>Only here.</p></header></body></html>").text == "Only here."


def test_an_empty_page_says_so():
    with pytest.raises(PermanentError, match="no readable text"):
        extract(b"<html><head><script>var a = 1;</script></head><body> </body></html>")


# --- Email ----------------------------------------------------------------------------------------

REPLY = """Hi Jordan,

Thanks for the call today. Pricing is attached.

Best,
Alex Rivera
Account Executive | Example Co

On Mon, Mar 4, 2024 at 9:00 AM Jordan Lee <jordan@acme.io>
wrote:
> Can you send pricing?
> Thanks
"""


def test_email_keeps_the_authors_text_and_sets_quotes_and_signature_aside():
    result = extract(builders.eml(builders.message(REPLY)), **REP)
    assert result.kind == "eml"
    assert result.text == "Hi Jordan,\n\nThanks for the call today. Pricing is attached."
    meta = result.metadata
    assert meta["quoted"].endswith("> Can you send pricing?\n> Thanks")
    assert meta["quoted"].startswith("On Mon, Mar 4, 2024")
    assert meta["signature"] == "Best,\nAlex Rivera\nAccount Executive | Example Co"
    assert meta["sign_off"] == "Best,"
    assert meta["from_rep"] is True and meta["subject"] == "Following up" and meta["message_count"] == 1


def test_interleaved_replies_keep_every_own_line():
    body = "On Mon, Jordan wrote:\n> Price?\nIt is $40 a seat.\n> Timeline?\nWe can start in May.\n"
    result = extract(builders.eml(builders.message(body)))
    assert result.text == "It is $40 a seat.\nWe can start in May."
    assert result.metadata["quoted"] == "On Mon, Jordan wrote:\n> Price?\n> Timeline?"


def test_outlook_original_message_and_dash_dash_signature_are_set_aside():
    body = ("Thursday works, see you then.\n\n-- \nAlex\nExample Co\n\n-----Original Message-----\n"
            "From: Jordan Lee <jordan@acme.io>\nSent: Monday, March 4, 2024 9:00 AM\nTo: Alex\nSubject: Meeting\n\n"
            "Does Thursday work?\n")
    result = extract(builders.eml(builders.message(body, charset="iso-8859-1", cte="base64")))
    assert result.text == "Thursday works, see you then."
    assert result.metadata["signature"] == "Alex\nExample Co"
    assert result.metadata["quoted"].startswith("-----Original Message-----")
    assert "Does Thursday work?" in result.metadata["quoted"]


def test_outlook_header_block_without_a_marker_is_quoted():
    body = ("Works for me.\n\nFrom: Jordan Lee <jordan@acme.io>\nSent: Monday, March 4, 2024 9:00 AM\n"
            "To: Alex Rivera\nSubject: RE: Meeting\n\nEarlier message.\n")
    result = extract(builders.eml(builders.message(body)))
    assert result.text == "Works for me."
    assert "Earlier message." in result.metadata["quoted"]


def test_forwarded_messages_are_set_aside_inline_and_attached():
    body = ("FYI — worth a look.\n\n---------- Forwarded message ---------\nFrom: Sam <sam@other.com>\n"
            "Subject: Intro\n\nHello there, intro text.\n")
    mail = builders.message(body)
    mail.add_attachment(builders.message("Attached original text.", subject="Old thread", sender="x@y.org"))
    result = extract(builders.eml(mail))
    assert result.text == "FYI — worth a look."
    forwarded = result.metadata["forwarded"]
    assert len(forwarded) == 2
    assert "Hello there, intro text." in forwarded[0]
    assert forwarded[1] == "Subject: Old thread\n\nAttached original text."


def test_charsets_and_transfer_encodings_are_decoded():
    text = "Gr\u00fc\u00dfe aus M\u00fcnchen, \u00e0 bient\u00f4t \u2014 caf\u00e9."
    for charset, cte in (("iso-8859-1", "base64"), ("utf-8", "quoted-printable"), ("utf-8", "base64")):
        if charset == "iso-8859-1":
            expected = text.replace("\u2014", "-")
        else:
            expected = text
        mail = builders.message(expected, charset=charset, cte=cte)
        assert extract(builders.eml(mail)).text == expected, (charset, cte)


def test_an_8bit_koi8_body_is_decoded():
    mail = builders.message("\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440", charset="koi8-r", cte="8bit")
    assert extract(builders.eml(mail)).text == "\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440"


def test_an_unknown_charset_falls_back_instead_of_failing():
    raw = builders.eml(builders.message("Plain ascii body.")).replace(b'charset="utf-8"', b'charset="x-nonsense"')
    assert b"x-nonsense" in raw
    assert extract(raw).text == "Plain ascii body."


def test_html_only_email_is_converted_with_quotes_and_signature_aside():
    page = ('<div dir="ltr">Hi Jordan,<br><br>Quick note: the <b>renewal</b> price holds \u2014 caf\u00e9 included.'
            '</div>'
            '<div class="gmail_signature">Alex | Example Co</div>'
            '<div class="gmail_quote"><div class="gmail_attr">On Mon, Jordan wrote:</div>'
            '<blockquote>Earlier text</blockquote></div>')
    mail = builders.message(html=page, charset="windows-1252", cte="quoted-printable")
    result = extract(builders.eml(mail))
    assert result.text == "Hi Jordan,\n\nQuick note: the renewal price holds \u2014 caf\u00e9 included."
    assert result.metadata["body_type"] == "text/html"
    assert result.metadata["signature"] == "Alex | Example Co"
    assert "Earlier text" in result.metadata["quoted"]


def test_plain_text_is_preferred_over_html():
    result = extract(builders.eml(builders.message("The plain version.", html="<p>The HTML version.</p>")))
    assert result.text == "The plain version."


def test_an_email_with_only_quoted_text_has_no_text_of_its_own():
    body = "On Mon, Mar 4, 2024 at 9:00 AM Jordan <j@acme.io> wrote:\n> hi\n> there\n"
    with pytest.raises(PermanentError, match="no text of its own"):
        extract(builders.eml(builders.message(body)))


def test_mailbox_keeps_the_reps_messages_when_the_rep_wrote_any():
    messages = [
        builders.message("From the start: a line beginning with From.\nSecond line.", sender="Alex <alex@example.com>"),
        builders.message("A prospect's question?", sender="Jordan <jordan@acme.io>"),
        builders.message("Following up on pricing.\n\nThanks,\nAlex", sender="ALEX@example.com"),
    ]
    box = builders.mbox(messages)
    mine = extract(box, **REP)
    assert mine.kind == "mbox"
    assert mine.text == ("From the start: a line beginning with From.\nSecond line.\n\nFollowing up on pricing.")
    assert mine.metadata["message_count"] == 3
    assert mine.metadata["messages_used"] == 2 and mine.metadata["messages_from_others"] == 1
    assert mine.metadata["sign_offs"] == ["Thanks,"]
    everyone = extract(box, rep_email="sam@example.com")
    assert "A prospect's question?" in everyone.text and everyone.metadata["messages_used"] == 3


def test_mailbox_message_cap_is_reported():
    box = builders.mbox([builders.message(f"Message number {index}.") for index in range(5)])
    result = extract(box, limits=Limits(mbox_max_messages=2))
    assert result.text == "Message number 0.\n\nMessage number 1."
    assert result.metadata["messages_over_limit"] == 3


# --- Transcripts ----------------------------------------------------------------------------------

VTT = """WEBVTT
Kind: captions

NOTE recorded on Zoom

intro
00:00:01.000 --> 00:00:03.000
<v Alex Rivera>Hi Jordan, thanks for joining.

00:00:03.200 --> 00:00:05.000 align:start
<v Alex Rivera>I wanted to walk through <i>pricing</i>.

00:00:05.000 --> 00:00:07.000
<v.loud Jordan Lee>Sure &amp; go ahead.

00:00:07.000 --> 00:00:09.000
<v Alex Rivera>Great, <00:00:07.500><c>let's start</c>.
"""


def test_vtt_keeps_only_the_reps_lines_when_the_rep_speaks():
    result = extract(VTT.encode(), **REP)
    assert result.kind == "vtt"
    assert result.text == "Hi Jordan, thanks for joining. I wanted to walk through pricing.\n\nGreat, let's start."
    assert result.metadata["speakers"] == ["Alex Rivera", "Jordan Lee"]
    assert result.metadata["rep_speaker"] == ["Alex Rivera"]


@pytest.mark.parametrize("rep_name", ["Alex", "alex rivera", "Alex R."])
def test_the_rep_is_matched_by_first_name_or_initial(rep_name):
    assert "Sure" not in extract(VTT.encode(), rep_name=rep_name).text


def test_vtt_keeps_every_speaker_when_the_rep_is_not_among_them():
    result = extract(VTT.encode(), rep_name="Sam Taylor")
    assert result.text == ("Alex Rivera: Hi Jordan, thanks for joining. I wanted to walk through pricing.\n\n"
                           "Jordan Lee: Sure & go ahead.\n\nAlex Rivera: Great, let's start.")


def test_vtt_without_speakers_merges_lines_and_drops_rolling_repeats():
    data = (b"WEBVTT\n\n00:00.000 --> 00:02.000\nso the first thing\n\n00:02.000 --> 00:04.000\nso the first thing\n"
            b"we do is listen\n\n00:09.000 --> 00:10.000\nthen we write\n")
    result = extract(data)
    assert result.text == "so the first thing we do is listen\n\nthen we write"
    assert result.metadata["speakers"] == []


SRT = """1
00:00:01,000 --> 00:00:02,000
Alex: Hello there.

2
00:00:02,000 --> 00:00:04,000
Jordan: Hi Alex.

3
00:00:04,000 --> 00:00:05,000
Alex: <b>Let's</b> start.
and keep going.

4
00:00:05,000 --> 00:00:06,000
{\\an8}Jordan: Sounds good.
"""


def test_srt_with_name_labels_keeps_the_reps_turns():
    result = extract(SRT.encode(), rep_name="Alex Rivera")
    assert result.kind == "srt"
    assert result.text == "Hello there.\n\nLet's start. and keep going."
    assert result.metadata["speakers"] == ["Alex", "Jordan"]


def test_srt_without_the_rep_keeps_all_turns_labelled():
    result = extract(SRT.encode())
    assert result.text == ("Alex: Hello there.\n\nJordan: Hi Alex.\n\nAlex: Let's start. and keep going.\n\n"
                           "Jordan: Sounds good.")


def test_a_lone_colon_phrase_is_not_a_speaker():
    data = (b"1\n00:00:01,000 --> 00:00:02,000\nNote: the demo is Tuesday.\n\n"
            b"2\n00:00:02,000 --> 00:00:03,000\nSee you.\n")
    result = extract(data)
    assert result.text == "Note: the demo is Tuesday. See you."
    assert result.metadata["speakers"] == []


@pytest.mark.parametrize("data", [
    b"WEBVTT\n\n00:00.000 --> 00:01.000\n\n\n00:01.000 --> 00:02.000\n<i> </i>\n",
    b"WEBVTT\n\nNOTE only a note\n",
    b"1\n00:00:01,000 --> 00:00:02,000\n<i></i>\n",
])
def test_a_transcript_without_spoken_lines_says_so(data):
    with pytest.raises(PermanentError, match="This transcript has no spoken lines."):
        extract(data)


# --- Refusals and limits shared by every kind -----------------------------------------------------


def test_an_executable_named_pdf_is_415():
    with pytest.raises(UnsupportedType) as caught:
        extract(b"MZ\x90\x00\x03\x00\x00\x00" + bytes(300), filename="invoice.pdf", declared_type="application/pdf")
    assert caught.value.status == 415


def test_an_image_is_415():
    with pytest.raises(UnsupportedType, match="PNG image"):
        extract(b"\x89PNG\r\n\x1a\n" + os.urandom(256), filename="photo.txt")


def test_a_zip_that_is_not_a_docx_is_415():
    with pytest.raises(UnsupportedType, match="not a Word document"):
        extract(builders.zip_bytes({"readme.txt": b"hello"}), filename="plan.docx")


@pytest.mark.parametrize("data", [b"", b"   \n\t\n", "\ufeff".encode()])
def test_empty_files_are_permanent_errors(data):
    with pytest.raises(PermanentError, match="empty|contains no text"):
        extract(data)


def test_an_upload_over_the_size_cap_is_413():
    with pytest.raises(TooLarge) as caught:
        extract(b"x" * 2048, limits=Limits(max_bytes=1024))
    assert caught.value.status == 413


def test_text_past_the_character_cap_is_cut_at_a_word_and_reported():
    result = extract(("word " * 1000).encode(), limits=Limits(max_chars=103))
    assert result.text == " ".join(["word"] * 20)
    assert result.metadata["truncated"] is True and result.metadata["chars_before_truncation"] == 4999


def test_extract_limited_returns_the_same_result_as_extract(word_document):
    assert extract_limited(word_document) == extract(word_document)


def test_extract_limited_refuses_unsupported_files_like_extract():
    with pytest.raises(UnsupportedType, match="PNG image"):
        extract_limited(b"\x89PNG\r\n\x1a\n" + bytes(64))
    with pytest.raises(TooLarge):
        extract_limited(b"x" * 2048, limits=Limits(max_bytes=1024))


def test_extract_limited_turns_a_hang_into_a_timeout(monkeypatch):
    def hang(*args, **kwargs):
        while True:
            pass

    monkeypatch.setitem(extraction._EXTRACTORS, extraction.Kind.TEXT, hang)
    with pytest.raises(PermanentError, match="took too long") as caught:
        extract_limited(b"plain text", limits=Limits(timeout_s=0.5))
    assert caught.value.code == "timeout"


def test_html_to_text_sets_email_quotes_aside_only_in_email_mode():
    page = "<p>Mine.</p><blockquote>Theirs.</blockquote>"
    assert html_to_text(page).text == "Mine.\n\nTheirs."
    email_mode = html_to_text(page, email_body=True)
    assert (email_mode.text, email_mode.quoted) == ("Mine.", "Theirs.")


PREFIXES = st.sampled_from([b"", b"%PDF-1.7\n", b"PK\x03\x04", b"WEBVTT\n\n", b"1\n00:00:01,000 --> 00:00:02,000\n",
                            b"From: a@b.c\nTo: d@e.f\nSubject: x\n\n", b"From a@b.c Mon Jan 1 00:00:00 2024\n",
                            b"<html><body>"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(PREFIXES, st.binary(max_size=400))
def test_arbitrary_bytes_give_text_or_a_permanent_error_never_another_exception(prefix, tail):
    try:
        result = extract(prefix + tail)
    except PermanentError as error:
        assert error.message.endswith((".", ")")) and "Traceback" not in error.message
    else:
        assert result.text.strip() == result.text and result.text
