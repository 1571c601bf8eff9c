"""Builders of real files for tests: PDFs (fpdf2 or by hand), DOCX (python-docx), zips, emails and mailboxes.

Hostile files (decompression bombs, reference loops, zip bombs) are built by hand so each test can
state exactly what is wrong with them.
"""

from __future__ import annotations

import email.policy
import email.utils
import io
import re
import zipfile
import zlib
from collections.abc import Iterable, Sequence
from email.message import EmailMessage

# --- PDF ------------------------------------------------------------------------------------------


def pdf(pages: Sequence[str], *, textless: Iterable[int] = (), owner_password: str = "",
        user_password: str = "") -> bytes:
    """A PDF made by fpdf2, one string of text per page.

    Args:
        pages: The text of each page; a page listed in ``textless`` gets no text at all.
        textless: Zero-based indexes of pages that carry only a drawn rectangle (no text layer).
        owner_password: Encrypt the file with this owner password (it opens without one).
        user_password: Also require this password to open it.
    """
    from fpdf import FPDF

    blank = set(textless)
    document = FPDF()
    document.set_compression(True)
    if owner_password:
        document.set_encryption(owner_password=owner_password, user_password=user_password or None)
    for index, text in enumerate(pages):
        document.add_page()
        if index in blank:
            document.set_fill_color(40, 90, 160)
            document.rect(20, 20, 120, 80, style="F")
            continue
        document.set_font("Helvetica", size=12)
        document.multi_cell(0, 6, text)
    return bytes(document.output())


def raw_pdf(objects: Sequence[bytes]) -> bytes:
    """A PDF written by hand from object bodies numbered 1, 2, ...; object 1 must be the catalog.

    The cross-reference table and trailer are computed, so the file is well-formed at the syntax level
    whatever its objects say.
    """
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def stream(data: bytes, extra: bytes = b"") -> bytes:
    """A PDF stream object body with the given (already encoded) data."""
    return b"<< /Length %d %s >>\nstream\n" % (len(data), extra) + data + b"\nendstream"


def deflated_zeros(size_mib: int) -> bytes:
    """A zlib stream that inflates to ``size_mib`` MiB of zero bytes, built in milliseconds.

    One MiB of zeros is deflated once and closed with a full flush, which makes the compressed segment
    independent of what came before; repeating it yields a valid stream of any length. The Adler-32 of
    n zero bytes is (n mod 65521) << 16 | 1.
    """
    compressor = zlib.compressobj(9, zlib.DEFLATED, 15)
    mib = bytes(1 << 20)
    first = compressor.compress(mib) + compressor.flush(zlib.Z_FULL_FLUSH)
    segment = compressor.compress(mib) + compressor.flush(zlib.Z_FULL_FLUSH)
    final_block = compressor.flush(zlib.Z_FINISH)[:-4]
    adler = (((size_mib << 20) % 65521) << 16) | 1
    return first + segment * (size_mib - 1) + final_block + adler.to_bytes(4, "big")


HELVETICA = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"


def pdf_bomb(size_mib: int = 1024) -> bytes:
    """A one-page PDF whose content stream is a ~1 MB FlateDecode stream inflating to ``size_mib`` MiB.

    The page has a font, so a text extractor cannot skip its content as textless.
    """
    return raw_pdf([
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        stream(deflated_zeros(size_mib), b"/Filter /FlateDecode"),
        HELVETICA,
    ])


def pdf_page_tree_loop() -> bytes:
    """A PDF whose page tree lists itself as its own kid, and whose page is its own parent."""
    return raw_pdf([
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [2 0 R 3 0 R] /Count 2 >>",
        b"<< /Type /Page /Parent 3 0 R /Kids [3 0 R] /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        stream(b"BT /F1 12 Tf 72 720 Td (loop) Tj ET"),
        HELVETICA,
    ])


def pdf_form_loop() -> bytes:
    """A PDF whose page draws a form XObject that draws itself."""
    return raw_pdf([
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 6 0 R >> /XObject << /Fm0 5 0 R >> >> >>",
        stream(b"BT /F1 12 Tf 72 720 Td (Outside the form.) Tj ET /Fm0 Do"),
        stream(b"BT /F1 12 Tf 72 700 Td (Inside the form.) Tj ET /Fm0 Do",
               b"/Type /XObject /Subtype /Form /BBox [0 0 612 792] "
               b"/Resources << /Font << /F1 6 0 R >> /XObject << /Fm0 5 0 R >> >>"),
        HELVETICA,
    ])


def pdf_deep_nesting(depth: int = 100_000) -> bytes:
    """A PDF whose catalog holds an array nested ``depth`` levels deep."""
    return raw_pdf([
        b"<< /Type /Catalog /Pages 2 0 R /Junk " + b"[" * depth + b"]" * depth + b" >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >>",
    ])


# --- DOCX and zips --------------------------------------------------------------------------------


def docx(paragraphs: Sequence[str], *, table: Sequence[Sequence[str]] | None = None, header: str = "",
         footer: str = "", after_table: Sequence[str] = ()) -> bytes:
    """A Word document made by python-docx: paragraphs, then an optional table, then more paragraphs."""
    import docx as python_docx

    document = python_docx.Document()
    section = document.sections[0]
    if header:
        section.header.paragraphs[0].text = header
    if footer:
        section.footer.paragraphs[0].text = footer
    for text in paragraphs:
        document.add_paragraph(text)
    if table:
        grid = document.add_table(rows=len(table), cols=max(len(row) for row in table))
        for row, values in zip(grid.rows, table):
            for cell, value in zip(row.cells, values):
                cell.text = value
    for text in after_table:
        document.add_paragraph(text)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def zip_bytes(entries: dict[str, bytes], *, compresslevel: int = 6) -> bytes:
    """A zip archive of the given entries, deflated."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=compresslevel) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return out.getvalue()


DOCX_TYPES = (b'<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/'
              b'package/2006/content-types"/>')


def docx_zip_bomb(size_mib: int = 64) -> bytes:
    """A zip shaped like a DOCX whose word/document.xml inflates to ``size_mib`` MiB of spaces."""
    return zip_bytes({"[Content_Types].xml": DOCX_TYPES, "word/document.xml": b" " * (size_mib << 20)},
                     compresslevel=1)


def docx_many_entries(count: int) -> bytes:
    """A zip shaped like a DOCX with ``count`` extra tiny entries."""
    entries = {"[Content_Types].xml": DOCX_TYPES, "word/document.xml": b"<w:document/>"}
    entries.update({f"word/media/image{index}.bin": b"x" for index in range(count)})
    return zip_bytes(entries, compresslevel=0)


def set_encrypted_flag(data: bytes) -> bytes:
    """The zip with bit 0 (encrypted) set in every local and central header, as a password tool leaves it."""
    out = bytearray(data)
    for signature, flag_offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        for match in re.finditer(re.escape(signature), data):
            out[match.start() + flag_offset] |= 0x01
    return bytes(out)


# --- Email ----------------------------------------------------------------------------------------


def message(body: str = "", *, sender: str = "Alex Rivera <alex@example.com>", to: str = "Jordan <jordan@acme.io>",
            subject: str = "Following up", html: str | None = None, charset: str = "utf-8",
            cte: str | None = None, date: str = "Tue, 05 Mar 2024 10:15:00 +0000") -> EmailMessage:
    """An email made by the email package. ``cte`` forces a transfer encoding (base64, quoted-printable)."""
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = to
    mail["Subject"] = subject
    mail["Date"] = date
    mail["Message-ID"] = f"<{abs(hash((body, subject, sender)))}@example.com>"
    if body:
        mail.set_content(body, charset=charset, cte=cte)
    if html is not None:
        if body:
            mail.add_alternative(html, subtype="html", charset=charset, cte=cte)
        else:
            mail.set_content(html, subtype="html", charset=charset, cte=cte)
    return mail


def eml(mail: EmailMessage) -> bytes:
    """The message as RFC 5322 bytes with CRLF line endings, as mail clients save .eml files."""
    return mail.as_bytes(policy=email.policy.SMTP)


def mbox(messages: Sequence[EmailMessage]) -> bytes:
    """An mboxrd mailbox: each message after a From_ line, body lines beginning "From " escaped."""
    out = bytearray()
    for mail in messages:
        raw = mail.as_bytes(policy=email.policy.default)
        raw = re.sub(rb"(?m)^(>*From )", rb">\1", raw)
        sender = email.utils.parseaddr(mail["From"])[1] or "unknown"
        out += b"From " + sender.encode() + b" Tue Mar  5 10:15:00 2024\n" + raw
        if not raw.endswith(b"\n"):
            out += b"\n"
        out += b"\n"
    return bytes(out)


def with_declared_size(data: bytes, name: str, size: int) -> bytes:
    """The zip with the uncompressed size of entry ``name`` rewritten to ``size`` in both its headers.

    A zip bomb can lie this way so that its central directory looks harmless.
    """
    out = bytearray(data)
    info = zipfile.ZipFile(io.BytesIO(data)).getinfo(name)
    out[info.header_offset + 22:info.header_offset + 26] = size.to_bytes(4, "little")  # local header
    encoded = name.encode()
    central = data.find(b"PK\x01\x02", info.header_offset)
    while central >= 0:
        if data[central + 46:central + 46 + len(encoded)] == encoded:
            out[central + 24:central + 28] = size.to_bytes(4, "little")
            break
        central = data.find(b"PK\x01\x02", central + 4)
    return bytes(out)
