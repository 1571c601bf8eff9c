"""What an uploaded file is, decided from its bytes.

The name and the declared content type come from the uploader, so they never decide the family of a
file; they only break ties between text kinds the bytes cannot tell apart (Markdown written without
markup reads as plain text). Anything that is not cleanly one accepted kind — images, programs, other
archives, a PDF with a zip glued to its end — is refused with 415 and a sentence saying what is accepted.
"""

from __future__ import annotations

import codecs
import enum
import io
import re
import struct
import zipfile

from shared.errors import PermanentError, UnsupportedType


class Kind(str, enum.Enum):
    PDF = "pdf"
    DOCX = "docx"
    TEXT = "text"
    MARKDOWN = "markdown"
    HTML = "html"
    EML = "eml"
    MBOX = "mbox"
    VTT = "vtt"
    SRT = "srt"


ACCEPTED = ("Accepted files are PDF, Word (.docx), plain text (.txt), Markdown (.md), web pages (.html), "
            "emails (.eml), mailbox exports (.mbox) and transcripts (.vtt, .srt).")

# Magic numbers of common files we refuse, so the refusal can say what the file looks like.
_REFUSED_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"\x7fELF", "a program (ELF executable)"),
    (b"\xcf\xfa\xed\xfe", "a program (Mach-O executable)"),
    (b"\xce\xfa\xed\xfe", "a program (Mach-O executable)"),
    (b"\xfe\xed\xfa\xce", "a program (Mach-O executable)"),
    (b"\xfe\xed\xfa\xcf", "a program (Mach-O executable)"),
    (b"\xca\xfe\xba\xbe", "a program (Mach-O or Java class)"),
    (b"\x00asm", "a WebAssembly program"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!\x1a\x07", "a RAR archive"),
    (b"BZh", "a bzip2 archive"),
    (b"\xfd7zXZ\x00", "an xz archive"),
    (b"SQLite format 3\x00", "a database file"),
    (b"OggS", "an audio file"),
    (b"fLaC", "an audio file"),
    (b"%!PS", "a PostScript file"),
    (b"{\\rtf", "a Rich Text Format (RTF) file"),
)
_OLE_SIGNATURE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"

_ZIP_LOCAL = b"PK\x03\x04"
_ZIP_EOCD = b"PK\x05\x06"
_EOCD = struct.Struct("<4sHHHHIIH")  # APPNOTE.TXT 4.3.16: end of central directory record
_MAX_ZIP_COMMENT = 0xFFFF

# C0 controls other than tab, line feed, vertical tab, form feed and carriage return never occur in
# prose; their presence means the bytes are binary that happens to decode.
_BINARY_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")
_BINARY_CONTROL_BYTES = re.compile(rb"[\x00-\x08\x0e-\x1a\x1c-\x1f\x7f]")

_HTML_START = re.compile(
    r"\A(?:\s|<!--.*?-->|<\?xml[^>]*>)*(?:<!doctype\s+html|<html[\s>]|<head[\s>]|<body[\s>])", re.I | re.S)
_HTML_TAG = re.compile(
    r"<(?:p|div|span|a|br|h[1-6]|ul|ol|li|table|tr|td|meta|title|article|section|main|strong|em|b|i)\b[^>]*>",
    re.I)
_SVG_START = re.compile(r"\A(?:\s|<!--.*?-->|<\?xml[^>]*>|<!doctype[^>]*>)*<svg[\s>]", re.I | re.S)
_META_CHARSET = re.compile(rb"<meta[^>]+charset\s*=\s*[\"']?\s*([A-Za-z0-9_.:-]+)", re.I)

_VTT_START = re.compile(r"\AWEBVTT(?:[ \t]|\r?\n|\r|\Z)")
_SRT_START = re.compile(
    r"\A\s*\d+[ \t]*\r?\n[ \t]*\d{1,2}:\d{2}:\d{2}[,.]\d{1,3}[ \t]*-->[ \t]*\d{1,2}:\d{2}:\d{2}[,.]\d{1,3}")

_HEADER_FIELD = re.compile(rb"([!-9;-~]+):")  # RFC 5322 2.2: printable ASCII except the colon
_MAIL_HEADERS = frozenset({
    b"to", b"cc", b"subject", b"date", b"message-id", b"mime-version", b"received", b"return-path",
    b"reply-to", b"in-reply-to", b"references", b"content-type", b"delivered-to", b"sender",
})
_MBOX_FROM_LINE = re.compile(rb"\AFrom \S+ ")

_MARKDOWN_SIGNALS = (
    re.compile(r"^#{1,6}[ \t]+\S", re.M),  # ATX heading
    re.compile(r"\[[^\]\n]+\]\([^)\s]+\)"),  # inline link
    re.compile(r"^[ \t]*(?:```|~~~)", re.M),  # fenced code
    re.compile(r"\*\*[^*\n]+\*\*|__[^_\n]+__"),  # strong emphasis
    re.compile(r"^[ \t]*\|?[ \t]*:?-{3,}:?[ \t]*\|", re.M),  # table delimiter row
    re.compile(r"^[ \t]*[-*+][ \t]+\[[ xX]\][ \t]", re.M),  # task list
)

_NAME_HINTS = {
    "md": Kind.MARKDOWN, "markdown": Kind.MARKDOWN, "mdown": Kind.MARKDOWN, "mkd": Kind.MARKDOWN,
    "txt": Kind.TEXT, "text": Kind.TEXT,
    "html": Kind.HTML, "htm": Kind.HTML, "xhtml": Kind.HTML,
}
_TYPE_HINTS = {
    "text/markdown": Kind.MARKDOWN, "text/x-markdown": Kind.MARKDOWN,
    "text/plain": Kind.TEXT,
    "text/html": Kind.HTML, "application/xhtml+xml": Kind.HTML,
}


class NotCleanZip(ValueError):
    """The bytes start like a zip archive but are not exactly one well-formed archive."""


def detect(data: bytes, *, filename: str = "", declared_type: str = "", max_zip_entries: int = 10_000) -> Kind:
    """Say which accepted kind of file ``data`` is.

    Args:
        data: The uploaded bytes.
        filename: The uploader's file name; only breaks ties among text kinds.
        declared_type: The uploader's content type; only breaks ties among text kinds.
        max_zip_entries: A zip with more entries than this is refused before its directory is parsed.

    Returns:
        The kind of the file.

    Raises:
        PermanentError: The file is empty, or is a damaged Word document or zip.
        UnsupportedType: The file is not cleanly one of the accepted kinds.
    """
    if not data:
        raise PermanentError("The file is empty.", code="empty_file")

    if data.startswith(b"%PDF-"):
        if _ends_with_zip_directory(data):
            raise _unsupported("a PDF with another file attached to its end")
        return Kind.PDF

    if data.startswith(_ZIP_LOCAL) or data.startswith(_ZIP_EOCD):
        _detect_zip(data, max_zip_entries)
        return Kind.DOCX

    if data.startswith(_OLE_SIGNATURE):
        raise UnsupportedType(
            "This looks like an old Word (.doc) file or a password-protected Office document. Save it as .docx "
            "without a password, or as PDF, and upload it again. " + ACCEPTED)
    described = _describe_binary(data)
    if described:
        raise _unsupported(described)

    if data.startswith(b"From ") and _MBOX_FROM_LINE.match(data):
        first_end = data.find(b"\n")
        if first_end > 0 and _looks_like_mail_headers(data[first_end + 1:]) and not _has_binary_bytes(data):
            return Kind.MBOX
    if _looks_like_mail_headers(data) and not _has_binary_bytes(data):
        return Kind.EML

    text = decode_text(data)
    if text is None:
        if decode_html(data) is not None:
            return Kind.HTML
        raise _unsupported("binary data rather than text")
    return _detect_text(text, _hint(filename, declared_type))


def decode_text(data: bytes) -> str | None:
    """Decode text that is UTF-8 (with or without a byte-order mark) or UTF-16 with a byte-order mark.

    Args:
        data: The raw bytes.

    Returns:
        The text, or None when the bytes are not such text or carry binary control characters.
    """
    if data.startswith(codecs.BOM_UTF8):
        encoding = "utf-8-sig"
    elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding = "utf-16"
    else:
        encoding = "utf-8"
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError:
        return None
    if _BINARY_CONTROL.search(text):
        return None
    return text


def decode_html(data: bytes) -> str | None:
    """Decode an HTML page: as text when it is UTF-8 or UTF-16, else by the charset its ``<meta>`` declares.

    Saved web pages often declare a legacy charset such as windows-1252, which plain-text detection
    would refuse.

    Args:
        data: The raw bytes.

    Returns:
        The decoded page, or None when the bytes are not a decodable HTML page.
    """
    text = decode_text(data)
    if text is not None:
        return text
    head = data[:4096]
    if not _HTML_START.match(head.decode("latin-1")):
        return None
    declared = _META_CHARSET.search(head)
    if not declared:
        return None
    try:
        codec = codecs.lookup(declared.group(1).decode("ascii"))
        text = data.decode(codec.name)
    except (LookupError, UnicodeDecodeError):
        return None
    if _BINARY_CONTROL.search(text):
        return None
    return text


def zip_directory(data: bytes, *, max_entries: int) -> list[zipfile.ZipInfo]:
    """Read a zip archive's central directory, without decompressing anything.

    The end-of-central-directory record is checked by hand first so that an archive announcing more
    entries than ``max_entries`` is refused before ``zipfile`` builds an object per entry.

    Args:
        data: The raw bytes of the archive.
        max_entries: The most entries accepted.

    Returns:
        The archive's entries.

    Raises:
        NotCleanZip: The bytes are not exactly one well-formed, single-disk, non-ZIP64 archive.
        PermanentError: The archive has more entries than allowed.
    """
    pos = _find_eocd(data)
    if pos is None:
        raise NotCleanZip("no end of central directory record at the end of the bytes")
    _sig, disk, cd_disk, entries_here, entries, cd_size, cd_offset, _comment = _EOCD.unpack_from(data, pos)
    if disk or cd_disk or entries_here != entries:
        raise NotCleanZip("a multi-disk archive")
    if entries == 0xFFFF or cd_size == 0xFFFFFFFF or cd_offset == 0xFFFFFFFF:
        raise NotCleanZip("a ZIP64 archive")
    if cd_offset + cd_size != pos:
        raise NotCleanZip("bytes before or inside the central directory")
    if entries > max_entries:
        raise PermanentError(
            f"The archive has {entries} entries, more than the {max_entries} a document may have.",
            code="too_many_entries")
    try:
        infos = zipfile.ZipFile(io.BytesIO(data)).infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, struct.error, ValueError, EOFError, OSError) as exc:
        raise NotCleanZip(str(exc)) from exc
    if len(infos) != entries:
        raise NotCleanZip("the directory does not hold the entries it announces")
    return infos


def _detect_zip(data: bytes, max_entries: int) -> None:
    try:
        names = {info.filename for info in zip_directory(data, max_entries=max_entries)}
    except NotCleanZip as exc:
        if data.rfind(_ZIP_EOCD) >= 0:
            # An end record that does not end the file: something is glued to the archive or hidden in it.
            raise _unsupported("a zip archive with other data attached to it") from exc
        if b"word/" in data[:1 << 20]:
            raise PermanentError(
                "The Word document is damaged or incomplete and cannot be read. Open it in Word, save it "
                "again, and upload the new copy.", code="damaged_file") from exc
        raise _unsupported("a damaged or unusual zip archive") from exc
    if "word/document.xml" in names and "[Content_Types].xml" in names:
        return
    if "xl/workbook.xml" in names:
        raise _unsupported("an Excel workbook")
    if "ppt/presentation.xml" in names:
        raise _unsupported("a PowerPoint presentation")
    raise _unsupported("a zip archive that is not a Word document")


def _ends_with_zip_directory(data: bytes) -> bool:
    return _find_eocd(data) is not None


def _find_eocd(data: bytes) -> int | None:
    """Offset of the end-of-central-directory record whose comment runs exactly to the end of the bytes."""
    start = max(0, len(data) - _EOCD.size - _MAX_ZIP_COMMENT)
    pos = data.rfind(_ZIP_EOCD, start)
    while pos >= 0:
        if len(data) - pos >= _EOCD.size and pos + _EOCD.size + _EOCD.unpack_from(data, pos)[7] == len(data):
            return pos
        pos = data.rfind(_ZIP_EOCD, start, pos)
    return None


def _describe_binary(data: bytes) -> str | None:
    for signature, description in _REFUSED_SIGNATURES:
        if data.startswith(signature):
            return description
    if data.startswith(b"ID3") and len(data) > 3 and data[3] in (2, 3, 4):
        return "an audio file (MP3)"
    if data.startswith(b"RIFF") and data[8:12] in (b"WEBP", b"WAVE", b"AVI "):
        return {b"WEBP": "a WebP image", b"WAVE": "an audio file (WAV)", b"AVI ": "a video file"}[data[8:12]]
    if data[4:8] == b"ftyp":
        return "a video or image file (MP4, MOV or HEIC)"
    if data.startswith(b"MZ") and b"\x00" in data[:512]:
        return "a program (Windows executable)"
    return None


def _has_binary_bytes(data: bytes) -> bool:
    return _BINARY_CONTROL_BYTES.search(data) is not None


def _looks_like_mail_headers(data: bytes) -> bool:
    """True when ``data`` opens with an RFC 5322 header block that has a From field and another mail field."""
    names: list[bytes] = []
    for raw in data[:64 * 1024].split(b"\n")[:500]:
        line = raw.rstrip(b"\r")
        if not line:
            break
        if line[:1] in (b" ", b"\t"):
            if not names:
                return False
            continue
        match = _HEADER_FIELD.match(line)
        if not match:
            return False
        names.append(match.group(1).lower())
    else:
        return False  # no blank line ends the header block within reach
    return b"from" in names and any(name in _MAIL_HEADERS for name in names)


def _hint(filename: str, declared_type: str) -> Kind | None:
    name = filename.rsplit("/", 1)[-1].rsplit("\\", 1)[-1]
    if "." in name:
        hinted = _NAME_HINTS.get(name.rsplit(".", 1)[-1].lower())
        if hinted:
            return hinted
    return _TYPE_HINTS.get(declared_type.split(";", 1)[0].strip().lower())


def _detect_text(text: str, hint: Kind | None) -> Kind:
    if _VTT_START.match(text):
        return Kind.VTT
    if _SRT_START.match(text):
        return Kind.SRT
    head = text[:4096]
    if _SVG_START.match(head):
        raise _unsupported("an SVG image")
    if _HTML_START.match(head):
        return Kind.HTML
    stripped = head.lstrip()
    tags = len(_HTML_TAG.findall(head))
    if stripped.startswith("<") and tags >= 2 and "</" in head:
        return Kind.HTML
    if hint is Kind.HTML and tags:
        return Kind.HTML
    if hint in (Kind.MARKDOWN, Kind.TEXT):
        return hint
    signals = sum(1 for pattern in _MARKDOWN_SIGNALS if pattern.search(text[:200_000]))
    return Kind.MARKDOWN if signals >= 2 else Kind.TEXT


def _unsupported(described: str) -> UnsupportedType:
    return UnsupportedType(f"This file looks like {described}, which cannot be used. {ACCEPTED}")
