"""Type detection by content: the accepted kinds, the refusals, and the name only breaking text ties."""

from __future__ import annotations

import codecs

import pytest

from shared.errors import PermanentError, UnsupportedType
from shared.voice import filetypes
from shared.voice.filetypes import Kind, detect
from tests import builders

VTT = b"WEBVTT\n\n00:00:01.000 --> 00:00:02.000\nHello.\n"
SRT = b"1\n00:00:01,000 --> 00:00:02,000\nHello.\n\n2\n00:00:02,000 --> 00:00:03,000\nAgain.\n"
MARKDOWN = b"# Plan\n\nSee [the deck](https://example.com/deck) and **bring numbers**.\n"


@pytest.fixture(scope="module")
def docx_bytes() -> bytes:
    return builders.docx(["Hello from Word."])


@pytest.fixture(scope="module")
def pdf_bytes() -> bytes:
    return builders.pdf(["Hello from a PDF."])


def test_pdf_and_docx_are_recognised_whatever_their_name(pdf_bytes, docx_bytes):
    assert detect(pdf_bytes, filename="notes.txt", declared_type="text/plain") is Kind.PDF
    assert detect(docx_bytes, filename="deck.pdf", declared_type="application/pdf") is Kind.DOCX


@pytest.mark.parametrize(("data", "kind"), [
    (b"Plain words, nothing more.\n", Kind.TEXT),
    (codecs.BOM_UTF8 + "Caf\u00e9 notes".encode(), Kind.TEXT),
    ("UTF-16 with a byte-order mark".encode("utf-16"), Kind.TEXT),
    (MARKDOWN, Kind.MARKDOWN),
    (b"<!DOCTYPE html><html><body><p>Hi</p></body></html>", Kind.HTML),
    (b"  <html lang='en'><p>Hi</p></html>", Kind.HTML),
    (b"<div><p>A fragment</p><p>of HTML</p></div>", Kind.HTML),
    (VTT, Kind.VTT),
    (codecs.BOM_UTF8 + VTT, Kind.VTT),
    (SRT, Kind.SRT),
    (SRT.replace(b"\n", b"\r\n"), Kind.SRT),
])
def test_text_kinds_are_recognised_by_content(data, kind):
    assert detect(data) is kind


def test_email_and_mailbox_are_recognised_by_their_headers():
    mail = builders.message("Hello Jordan.")
    assert detect(builders.eml(mail), filename="x.txt") is Kind.EML
    assert detect(builders.mbox([mail, mail])) is Kind.MBOX


def test_email_with_a_non_utf8_8bit_body_is_still_an_email():
    mail = builders.message("\u041f\u0440\u0438\u0432\u0435\u0442", charset="koi8-r", cte="8bit")
    raw = builders.eml(mail)
    assert filetypes.decode_text(raw) is None  # not UTF-8, so only the header check can accept it
    assert detect(raw) is Kind.EML


def test_text_that_merely_starts_with_a_from_line_is_text():
    assert detect(b"From: the desk of Alex\nA note without any mail headers after it.\n") is Kind.TEXT


def test_name_breaks_ties_among_text_kinds_only():
    plain = b"Just a few words\nwith no markup at all.\n"
    assert detect(plain) is Kind.TEXT
    assert detect(plain, filename="notes.md") is Kind.MARKDOWN
    assert detect(plain, declared_type="text/markdown; charset=utf-8") is Kind.MARKDOWN
    assert detect(MARKDOWN, filename="notes.txt") is Kind.TEXT
    assert detect(b"Hello <b>there</b>", filename="page.html") is Kind.HTML
    assert detect(b"Hello <b>there</b>") is Kind.TEXT
    # The name cannot turn text into a transcript, nor a transcript into text.
    assert detect(plain, filename="call.vtt") is Kind.TEXT
    assert detect(VTT, filename="call.txt") is Kind.VTT


def test_html_in_a_declared_legacy_charset_is_accepted():
    page = '<html><head><meta charset="windows-1252"></head><body><p>Caf\u00e9 \u2013 menu</p></body></html>'
    raw = page.encode("cp1252")
    assert filetypes.decode_text(raw) is None
    assert detect(raw) is Kind.HTML
    assert "Caf\u00e9 \u2013 menu" in filetypes.decode_html(raw)


@pytest.mark.parametrize(("data", "looks_like"), [
    (b"\x89PNG\r\n\x1a\n" + bytes(64), "PNG image"),
    (b"\xff\xd8\xff\xe0" + bytes(64), "JPEG image"),
    (b"GIF89a" + bytes(64), "GIF image"),
    (b"\x7fELF\x02\x01\x01" + bytes(64), "ELF executable"),
    (b"MZ\x90\x00\x03\x00\x00\x00" + bytes(120), "Windows executable"),
    (b"\x1f\x8b\x08\x00" + bytes(64), "gzip"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(64), "old Word (.doc)"),
    (b"RIFF\x00\x00\x00\x00WEBPVP8 " + bytes(64), "WebP image"),
    (b"<?xml version='1.0'?><svg xmlns='http://www.w3.org/2000/svg'><text>hi</text></svg>", "SVG image"),
    (bytes(range(256)) * 4, "binary data"),
    ("Latin-1 text: caf\u00e9 cr\u00e8me".encode("latin-1"), "binary data"),
    (b"text with a NUL\x00 byte in it", "binary data"),
])
def test_other_files_are_refused_with_415_saying_what_is_accepted(data, looks_like):
    with pytest.raises(UnsupportedType) as caught:
        detect(data, filename="upload.pdf", declared_type="application/pdf")
    assert caught.value.status == 415
    assert looks_like in caught.value.message
    assert "Accepted files are PDF, Word (.docx)" in caught.value.message


def test_zips_that_are_not_word_documents_are_refused():
    with pytest.raises(UnsupportedType, match="zip archive that is not a Word document"):
        detect(builders.zip_bytes({"notes.txt": b"hello"}), filename="notes.docx")
    with pytest.raises(UnsupportedType, match="Excel workbook"):
        detect(builders.zip_bytes({"[Content_Types].xml": b"<Types/>", "xl/workbook.xml": b"<w/>"}))


def test_polyglots_are_refused(pdf_bytes, docx_bytes):
    with pytest.raises(UnsupportedType, match="another file attached"):
        detect(pdf_bytes + docx_bytes)  # a PDF that is also a valid zip (its directory sits at the end)
    with pytest.raises(UnsupportedType):
        detect(b"MZ\x90\x00" + bytes(200) + docx_bytes)  # a self-extracting archive: a program with a zip
    with pytest.raises(UnsupportedType):
        detect(docx_bytes + b"%PDF-1.7 trailing document")  # bytes after the zip's end record


def test_empty_and_damaged_files_are_permanent_errors_not_415(docx_bytes):
    with pytest.raises(PermanentError, match="empty") as empty:
        detect(b"")
    assert not isinstance(empty.value, UnsupportedType)
    with pytest.raises(PermanentError, match="damaged or incomplete") as truncated:
        detect(docx_bytes[: len(docx_bytes) // 2])
    assert not isinstance(truncated.value, UnsupportedType)


def test_entry_count_is_checked_before_the_directory_is_parsed():
    archive = builders.docx_many_entries(50)
    with pytest.raises(PermanentError, match="52 entries, more than the 20"):
        filetypes.zip_directory(archive, max_entries=20)
    assert len(filetypes.zip_directory(archive, max_entries=100)) == 52


def test_zip64_and_multi_disk_archives_are_not_clean(docx_bytes):
    eocd = docx_bytes.rfind(b"PK\x05\x06")
    zip64 = bytearray(docx_bytes)
    zip64[eocd + 10:eocd + 12] = b"\xff\xff"  # total entries 0xFFFF: the real count is in a ZIP64 record
    with pytest.raises(filetypes.NotCleanZip, match="ZIP64|multi-disk"):
        filetypes.zip_directory(bytes(zip64), max_entries=1 << 20)
    multi = bytearray(docx_bytes)
    multi[eocd + 4:eocd + 6] = b"\x01\x00"
    with pytest.raises(filetypes.NotCleanZip, match="multi-disk"):
        filetypes.zip_directory(bytes(multi), max_entries=100)


def test_decode_text_refuses_binary_control_characters_but_keeps_text_ones():
    assert filetypes.decode_text(b"tab\tand\r\nform\x0cfeed") == "tab\tand\r\nform\x0cfeed"
    assert filetypes.decode_text(b"bell\x07") is None
    assert filetypes.decode_text("\ufeffUTF-32 is not accepted".encode("utf-32")) is None
