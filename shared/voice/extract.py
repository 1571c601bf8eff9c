"""Uploaded bytes → clean text, one function per kind of file.

``extract`` detects the kind by content (``filetypes.detect``) and calls the matching ``extract_*``
function. Every failure a file can cause ends as ``PermanentError`` (or ``UnsupportedType`` /
``TooLarge``) with a sentence a rep can act on: retrying the same bytes cannot help. Parsers are
guarded by limits set here, and ``extract_limited`` runs the whole thing in a child process under a
time and memory cap (``sandbox.run_limited``), the last line of defence against a file built to hurt.

The text is what the rep wrote: quoted replies, forwarded messages and signatures of emails, and the
other speakers of a transcript when the rep is among the speakers, are set aside in the metadata.
Personal data is not scrubbed here; ``pii.scrub`` does that, on the text and on the metadata strings.
"""

from __future__ import annotations

import dataclasses
import email
import email.message
import email.policy
import email.utils
import html
import io
import re
import shutil
import unicodedata
import zipfile
from collections.abc import Callable, Iterable, Iterator
from html.parser import HTMLParser
from typing import Any

from shared.errors import PermanentError, TooLarge
from shared.voice import filetypes
from shared.voice.filetypes import Kind
from shared.voice.ocr import Outcome as OcrOutcome
from shared.voice.ocr import Settings as OcrSettings
from shared.voice.ocr import ocr_pages


@dataclasses.dataclass(frozen=True)
class Limits:
    """Caps on what one upload may cost. The defaults suit a worker with 1 GiB of memory.

    Attributes:
        max_bytes: Largest upload accepted (413 above it).
        max_chars: Longest text kept; the rest is cut at a word boundary and the cut is reported.
        pdf_max_pages: Pages read from a PDF; later pages are counted but not read.
        pdf_max_page_tree: Page-tree entries a PDF may have at all; more is treated as hostile.
        pdf_max_stream_bytes: Most bytes one PDF stream may decode to.
        docx_max_entries: Entries a DOCX zip may have (real documents have tens).
        docx_max_total_bytes: Total uncompressed size of a DOCX, from its central directory.
        docx_max_ratio: Highest compression ratio of any DOCX entry larger than 1 MiB.
        mbox_max_messages: Messages read from a mailbox; the rest are counted.
        timeout_s: Wall-clock (and CPU) seconds for ``extract_limited``.
        memory_mb: Extra memory for ``extract_limited``'s child.
    """

    max_bytes: int = 25 * 1024 * 1024
    max_chars: int = 2_000_000
    pdf_max_pages: int = 500
    pdf_max_page_tree: int = 10_000
    pdf_max_stream_bytes: int = 16 * 1024 * 1024
    docx_max_entries: int = 1_000
    docx_max_total_bytes: int = 256 * 1024 * 1024
    docx_max_ratio: int = 100
    mbox_max_messages: int = 5_000
    timeout_s: float = 60.0
    memory_mb: int = 512


@dataclasses.dataclass(frozen=True)
class Extracted:
    """The text of a file, its kind (a ``filetypes.Kind`` value) and what was learned or set aside."""

    text: str
    kind: str
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)


_SET_ASIDE_CHARS = 20_000  # quoted/forwarded/signature text kept in metadata, per item
_ENTRY_RATIO_FLOOR = 1024 * 1024  # entries smaller than this cannot be a bomb whatever their ratio


def extract(data: bytes, *, filename: str = "", declared_type: str = "", rep_name: str = "", rep_email: str = "",
            limits: Limits = Limits()) -> Extracted:
    """Turn an uploaded file into clean text.

    Args:
        data: The uploaded bytes.
        filename: The uploader's file name; only breaks ties among text kinds (.md vs .txt).
        declared_type: The uploader's content type; the same.
        rep_name: The rep's name: a transcript keeps only their lines when they are among the speakers.
        rep_email: The rep's address: a mailbox keeps only their messages when they wrote any.
        limits: Size and complexity caps.

    Returns:
        The text, its kind and metadata (page counts, speakers, messages, what was set aside).

    Raises:
        TooLarge: The upload is larger than ``limits.max_bytes``.
        UnsupportedType: The bytes are not cleanly one accepted kind.
        PermanentError: The file is empty, damaged, hostile or holds no text.
    """
    if len(data) > limits.max_bytes:
        raise TooLarge(f"The file is {_mb(len(data))}; the largest accepted is {_mb(limits.max_bytes)}.",
                       details={"limit_bytes": limits.max_bytes})
    kind = filetypes.detect(data, filename=filename, declared_type=declared_type,
                            max_zip_entries=limits.docx_max_entries)
    return _EXTRACTORS[kind](data, rep_name=rep_name, rep_email=rep_email, limits=limits)


def extract_limited(data: bytes, *, filename: str = "", declared_type: str = "", rep_name: str = "",
                    rep_email: str = "", limits: Limits = Limits()) -> Extracted:
    """``extract`` in a child process capped at ``limits.timeout_s`` seconds and ``limits.memory_mb`` MB.

    Args:
        data: The uploaded bytes.
        filename: See ``extract``.
        declared_type: See ``extract``.
        rep_name: See ``extract``.
        rep_email: See ``extract``.
        limits: See ``extract``; also supplies the time and memory caps.

    Returns:
        What ``extract`` returns.

    Raises:
        PermanentError: Whatever ``extract`` raises, or the time or memory cap was reached.
    """
    from shared.voice.sandbox import run_limited

    if len(data) > limits.max_bytes:  # refuse before paying for a fork
        raise TooLarge(f"The file is {_mb(len(data))}; the largest accepted is {_mb(limits.max_bytes)}.",
                       details={"limit_bytes": limits.max_bytes})
    # Detection is bounded (it reads headers and at most the zip directory), so it runs here: an
    # unsupported file costs no fork, and the parser's modules are imported once in this process
    # instead of in every child, which would throw the import away when it exits.
    kind = filetypes.detect(data, filename=filename, declared_type=declared_type,
                            max_zip_entries=limits.docx_max_entries)
    _import_parser(kind)
    return run_limited(_EXTRACTORS[kind], data, rep_name=rep_name, rep_email=rep_email, limits=limits,
                       timeout_s=limits.timeout_s, memory_mb=limits.memory_mb)


def _import_parser(kind: Kind) -> None:
    if kind is Kind.PDF:
        import pypdf  # noqa: F401
    elif kind is Kind.DOCX:
        import docx  # noqa: F401
        import docx.table  # noqa: F401
        import docx.text.paragraph  # noqa: F401


# --- PDF ------------------------------------------------------------------------------------------


def extract_pdf(data: bytes, *, limits: Limits = Limits(), ocr: OcrSettings | None = None,
                **_: Any) -> Extracted:
    """Text of a PDF's text layer, page by page; pages without one are read by OCR when it is installed.

    Pages without a text layer (scans) are counted and reported. When the ``tesseract`` command is
    found, their embedded images are read by it (``ocr.ocr_pages``) and the text takes the page's place;
    otherwise the metadata says OCR is not available. pypdf's own resource limits are set for the
    duration of the call (see ``_pypdf_configuration``).

    Args:
        data: The PDF's bytes.
        limits: ``pdf_max_pages``, ``pdf_max_page_tree``, ``pdf_max_stream_bytes``, ``max_chars``; OCR
            may use half of ``timeout_s`` unless ``ocr`` says otherwise.
        ocr: The OCR command, language and limits; None for the defaults.

    Returns:
        The pages' text, with metadata ``pages``, ``pages_read``, ``pages_without_text``,
        ``pages_unreadable``, ``ocr`` and, when pages were skipped, a ``note``. When OCR ran, also
        ``ocr_language``, ``pages_ocr`` (pages whose text came from OCR), ``ocr_problems`` (page and
        reason, for pages OCR found no text on) and ``pages_not_ocr`` (pages past OCR's limits).

    Raises:
        PermanentError: Encrypted, damaged, hostile, or without any text.
    """
    import pypdf
    from pypdf.errors import FileNotDecryptedError, LimitReachedError

    # Half the time cap by default, so the text already read is returned before the sandbox stops the child.
    ocr_settings = ocr or OcrSettings(total_timeout_s=limits.timeout_s / 2)
    ocr_available = shutil.which(ocr_settings.binary) is not None
    ocr_found = OcrOutcome(available=ocr_available, language=ocr_settings.language)
    pages_text: list[tuple[int, str]] = []
    without_text: list[int] = []
    unreadable: list[int] = []
    chars = 0
    with pypdf.apply_configuration(**_pypdf_configuration(limits)):
        try:
            reader = pypdf.PdfReader(io.BytesIO(data), strict=False)
            if reader.is_encrypted and reader.decrypt("") == pypdf.PasswordType.NOT_DECRYPTED:
                raise PermanentError(_PDF_PASSWORD, code="encrypted")
            total = len(reader.pages)
            for index in range(min(total, limits.pdf_max_pages)):
                try:
                    text = reader.pages[index].extract_text() or ""
                except (LimitReachedError, RecursionError, MemoryError, FileNotDecryptedError):
                    raise
                except Exception:  # one damaged page should not lose the others; the count is reported
                    unreadable.append(index + 1)
                    continue
                if not text.strip():
                    without_text.append(index + 1)
                    continue
                pages_text.append((index + 1, text))
                chars += len(text)
                if chars > limits.max_chars:
                    break
            if without_text and ocr_available:
                ocr_found = ocr_pages([(number, reader.pages[number - 1]) for number in without_text],
                                      settings=ocr_settings)
                pages_text = sorted(pages_text + list(ocr_found.texts.items()))
        except PermanentError:
            raise
        except FileNotDecryptedError as exc:
            raise PermanentError(_PDF_PASSWORD, code="encrypted") from exc
        except LimitReachedError as exc:
            raise PermanentError(
                "The PDF is built to expand far beyond its size or is unreasonably complex (for example a "
                "compressed stream that unpacks to gigabytes), so it was not read.", code="hostile_file") from exc
        except RecursionError as exc:
            raise PermanentError(_PDF_LOOP, code="damaged_file") from exc
        except MemoryError:
            raise
        except Exception as exc:  # the bytes are the only input: any parser failure is a damaged file
            if "cyclic" in str(exc).lower():  # pypdf's PdfReadError("Detected cyclic page references.")
                raise PermanentError(_PDF_LOOP, code="damaged_file") from exc
            raise PermanentError("The PDF is damaged or incomplete and cannot be read. Open it, save or "
                                 "export it again as PDF, and upload the new copy.", code="damaged_file") from exc

    metadata: dict[str, Any] = {
        "pages": total,
        "pages_read": min(total, limits.pdf_max_pages),
        "pages_without_text": len(without_text),
        "pages_unreadable": len(unreadable),
        "ocr": "available" if ocr_available else "unavailable",
    }
    notes = []
    if without_text:
        metadata["pages_without_text_list"] = without_text[:100]
        if ocr_available:
            metadata["ocr_language"] = ocr_found.language
            metadata["pages_ocr"] = sorted(ocr_found.texts)[:100]
            metadata["ocr_problems"] = [{"page": page, "problem": problem}
                                        for page, problem in sorted(ocr_found.problems.items())][:100]
            metadata["pages_not_ocr"] = ocr_found.not_read[:100]
            skipped = f"{len(ocr_found.texts)} of them were read by OCR ({ocr_found.language})."
            skipped += "".join(f" Page {page}: {problem}" for page, problem in sorted(ocr_found.problems.items())[:5])
            if ocr_found.not_read:
                skipped += f" {len(ocr_found.not_read)} were not read by OCR (page or time limit)."
        else:
            skipped = "OCR is not available, so they were skipped."
        notes.append(f"{len(without_text)} of {total} pages had no text layer (scanned images?); {skipped}")
    if unreadable:
        notes.append(f"{len(unreadable)} pages could not be read and were skipped.")
    if total > limits.pdf_max_pages:
        notes.append(f"Only the first {limits.pdf_max_pages} of {total} pages were read.")
    if notes:
        metadata["note"] = " ".join(notes)
    if not pages_text:
        if without_text and not unreadable:
            ocr_said = "OCR found no text in them" if ocr_available else "OCR is not available"
            raise PermanentError(
                f"The PDF has no text layer on any of its {len(without_text)} pages (it looks scanned) and "
                f"{ocr_said}. Upload a PDF with selectable text or the original document.",
                code="no_text", details={"pages_without_text": len(without_text)})
        if unreadable:
            raise PermanentError("The PDF is damaged: none of its pages could be read.", code="damaged_file")
        raise PermanentError("The PDF contains no text.", code="no_text")
    return _finish("\n\n".join(text for _, text in pages_text), Kind.PDF, metadata, limits,
                   "The PDF contains no text.")


_PDF_LOOP = "The PDF's structure refers back to itself without end, so it cannot be read."
_PDF_PASSWORD = ("The PDF is protected by a password. Remove the password (print or export it to a new PDF) "
                 "and upload it again.")


def _pypdf_configuration(limits: Limits) -> dict[str, Any]:
    """pypdf limits for untrusted files, set deliberately rather than inherited.

    pypdf.Configuration (pypdf 7, "Configuration used while processing PDF files ... protect against
    excessive resource consumption caused by malformed or malicious PDF files") defaults to 75 MB per
    decoded stream and 300 MB of decoding work per stream, sized for trusted desktop use. Text extraction
    never needs that much: content streams of real pages are kilobytes to a few megabytes.
    """
    stream = limits.pdf_max_stream_bytes
    return {
        "maximum_declared_stream_length": limits.max_bytes,  # a /Length beyond the file is a lie
        "zlib_maximum_output_length": stream,
        "lzw_maximum_output_length": stream,
        "run_length_maximum_output_length": stream,
        "brotli_maximum_output_length": stream,
        "jbig2_maximum_output_length": stream,
        "array_based_stream_maximum_output_length": stream,
        "image_maximum_buffer_size": stream,
        "stream_decoding_work_maximum_length": 4 * stream,
        # The recovery path for a damaged zlib stream feeds the decoder one byte at a time in Python;
        # 5 MB of that (the default) takes seconds.
        "zlib_maximum_recovery_input_length": 1024 * 1024,
        "page_tree_maximum_entries": limits.pdf_max_page_tree,
        "page_tree_maximum_depth": 50,
        "page_tree_maximum_page_entries": 20 * limits.pdf_max_page_tree,
        "xform_maximum_invocations_per_extraction": 1_000,
        "jbig2dec_binary": None,  # never start an outside program on uploaded bytes
        "disable_legacy_handling": True,
    }


# --- DOCX -----------------------------------------------------------------------------------------


def extract_docx(data: bytes, *, limits: Limits = Limits(), **_: Any) -> Extracted:
    """Text of a Word document: headers, then the body (paragraphs and tables in order), then footers.

    The zip is vetted from its central directory before anything is decompressed: entry count, total
    uncompressed size, per-entry compression ratio, encryption and compression method. python-docx
    then parses it; its XML parser does not resolve entities (``resolve_entities=False``) and lxml
    refuses trees deeper than 256 levels or text nodes over 10 MB unless ``huge_tree`` is set.

    Args:
        data: The DOCX bytes.
        limits: ``docx_max_entries``, ``docx_max_total_bytes``, ``docx_max_ratio``, ``max_chars``.

    Returns:
        The document's text, with metadata ``paragraphs``, ``tables``, ``headers`` and ``footers``.

    Raises:
        PermanentError: Encrypted, damaged, a zip bomb, or without any text.
    """
    try:
        infos = filetypes.zip_directory(data, max_entries=limits.docx_max_entries)
    except filetypes.NotCleanZip as exc:
        raise PermanentError(_DOCX_DAMAGED, code="damaged_file") from exc
    _vet_zip(infos, limits)

    import docx
    from docx.oxml.ns import qn

    try:
        document = docx.Document(io.BytesIO(data))
        headers: list[str] = []
        footers: list[str] = []
        for section in document.sections:
            for part, bucket in ((section.first_page_header, headers), (section.header, headers),
                                 (section.even_page_header, headers), (section.first_page_footer, footers),
                                 (section.footer, footers), (section.even_page_footer, footers)):
                if part.is_linked_to_previous:
                    continue
                text = "\n".join(_docx_blocks(part._element, qn)).strip()
                if text and text not in bucket:
                    bucket.append(text)
        counts = {"paragraphs": 0, "tables": 0}
        body = list(_docx_blocks(document.element.body, qn, counts))
    except (MemoryError, RecursionError):
        raise
    except PermanentError:
        raise
    except Exception as exc:  # the bytes are the only input: any parser failure is a damaged file
        raise PermanentError(_DOCX_DAMAGED, code="damaged_file") from exc
    text = "\n".join([*headers, *body, *footers])
    metadata = {**counts, "headers": len(headers), "footers": len(footers)}
    return _finish(text, Kind.DOCX, metadata, limits, "The Word document contains no text.")


_DOCX_DAMAGED = ("The Word document is damaged or incomplete and cannot be read. Open it in Word, save it again, "
                 "and upload the new copy.")
_MAX_TABLE_NESTING = 8


def _vet_zip(infos: list[zipfile.ZipInfo], limits: Limits) -> None:
    names = set()
    total = 0
    for info in infos:
        if info.flag_bits & 0x1:  # APPNOTE.TXT 4.4.4: bit 0 = encrypted
            raise PermanentError("The Word document is encrypted. Remove the password and upload it again.",
                                 code="encrypted")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise PermanentError(_DOCX_DAMAGED + " (It uses a compression method Word does not write.)",
                                 code="damaged_file")
        if info.filename in names:
            raise PermanentError(_DOCX_DAMAGED + " (It holds two parts with the same name.)", code="damaged_file")
        names.add(info.filename)
        if info.compress_type == zipfile.ZIP_STORED and info.file_size != info.compress_size:
            raise PermanentError(_DOCX_DAMAGED, code="damaged_file")
        if info.file_size > _ENTRY_RATIO_FLOOR and info.file_size > limits.docx_max_ratio * max(info.compress_size, 1):
            raise PermanentError(
                f"The Word document contains a part that would expand {info.file_size // max(info.compress_size, 1)} "
                f"times (to {_mb(info.file_size)}); that is how a zip bomb is built, so it was not opened.",
                code="hostile_file")
        total += info.file_size
    if total > limits.docx_max_total_bytes:
        raise PermanentError(
            f"The Word document would expand to {_mb(total)}, more than the {_mb(limits.docx_max_total_bytes)} "
            "allowed, so it was not opened.", code="hostile_file")


def _docx_blocks(container: Any, qn: Callable[[str], str], counts: dict[str, int] | None = None,
                 depth: int = 0) -> Iterator[str]:
    """Lines of a body, header, footer or table cell in reading order, content controls included."""
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    p_tag, tbl_tag, sdt_tag, sdt_content = qn("w:p"), qn("w:tbl"), qn("w:sdt"), qn("w:sdtContent")
    for child in container.iterchildren():
        if child.tag == p_tag:
            if counts is not None:
                counts["paragraphs"] += 1
            yield Paragraph(child, None).text
        elif child.tag == tbl_tag:
            if counts is not None:
                counts["tables"] += 1
            if depth < _MAX_TABLE_NESTING:
                yield from _docx_table(Table(child, None), qn, depth + 1)
        elif child.tag == sdt_tag:
            for content in child.iterchildren(sdt_content):
                yield from _docx_blocks(content, qn, counts, depth)


def _docx_table(table: Any, qn: Callable[[str], str], depth: int) -> Iterator[str]:
    for row in table.rows:
        seen: set[int] = set()
        cells = []
        for cell in row.cells:
            if id(cell._tc) in seen:  # a merged cell is returned once per grid column it spans
                continue
            seen.add(id(cell._tc))
            text = " ".join(line.strip() for line in _docx_blocks(cell._tc, qn, None, depth) if line.strip())
            if text:
                cells.append(text)
        if cells:
            yield " | ".join(cells)


# --- Plain text and Markdown ----------------------------------------------------------------------


def extract_text(data: bytes, *, limits: Limits = Limits(), **_: Any) -> Extracted:
    """Plain text, UTF-8 or UTF-16 with a byte-order mark.

    Args:
        data: The bytes.
        limits: ``max_chars``.

    Returns:
        The text, whitespace tidied.

    Raises:
        PermanentError: Not decodable, or only whitespace.
    """
    return _finish(_decoded(data), Kind.TEXT, {}, limits, "The file contains no text.")


def extract_markdown(data: bytes, *, limits: Limits = Limits(), **_: Any) -> Extracted:
    """Markdown with its syntax removed lightly: the words stay, the markup goes.

    Args:
        data: The bytes.
        limits: ``max_chars``.

    Returns:
        The text without heading marks, emphasis, link targets, code fences, table rules or quote marks.

    Raises:
        PermanentError: Not decodable, or no words.
    """
    return _finish(strip_markdown(_decoded(data)), Kind.MARKDOWN, {}, limits, "The file contains no text.")


_MD_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^[ \t]*(?:```|~~~).*$", re.M), ""),  # code fences (the code itself stays)
    (re.compile(r"^[ \t]{0,3}\[[^\]\n]+\]:[ \t]*\S+.*$", re.M), ""),  # link reference definitions
    (re.compile(r"^[ \t]*(?:[-*_][ \t]*){3,}$", re.M), ""),  # thematic breaks
    (re.compile(r"^[ \t]*\|?(?:[ \t]*:?-{3,}:?[ \t]*\|)+[ \t]*(?::?-{3,}:?)?[ \t]*$", re.M), ""),  # table rules
    (re.compile(r"^[ \t]{0,3}#{1,6}[ \t]+(.*?)[ \t]*#*[ \t]*$", re.M), r"\1"),  # ATX headings
    (re.compile(r"^[ \t]*(?:=+|-+)[ \t]*$", re.M), ""),  # setext underlines
    (re.compile(r"^(?:[ \t]*>)+[ \t]?", re.M), ""),  # block quotes
    (re.compile(r"^([ \t]*)(?:[-*+]|\d{1,9}[.)])[ \t]+(?:\[[ xX]\][ \t]+)?", re.M), r"\1"),  # list markers
    (re.compile(r"!\[([^\]\n]*)\]\([^)\n]*\)"), r"\1"),  # images: keep the alt text
    (re.compile(r"\[([^\]\n]+)\]\([^)\n]*\)"), r"\1"),  # inline links
    (re.compile(r"\[([^\]\n]+)\]\[[^\]\n]*\]"), r"\1"),  # reference links
    (re.compile(r"<(https?://[^>\s]+)>"), r"\1"),  # autolinks
    (re.compile(r"</?[A-Za-z][A-Za-z0-9-]*(?:\s[^<>]*)?/?>"), ""),  # inline HTML tags
    (re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1"), r"\2"),  # strong
    (re.compile(r"(?<![\w*])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\w*])"), r"\1"),  # emphasis with *
    (re.compile(r"(?<![\w_])_(?=\S)([^_\n]+?)(?<=\S)_(?![\w_])"), r"\1"),  # emphasis with _ (not snake_case)
    (re.compile(r"~~(?=\S)(.+?)(?<=\S)~~"), r"\1"),  # strikethrough
    (re.compile(r"`+([^`\n]+?)`+"), r"\1"),  # inline code
    (re.compile(r"[ \t]*\|[ \t]*"), " "),  # table pipes
)


def strip_markdown(text: str) -> str:
    """Remove Markdown syntax and keep the words.

    Args:
        text: Markdown source.

    Returns:
        The text a reader would see, without markup.
    """
    for pattern, replacement in _MD_RULES:
        text = pattern.sub(replacement, text)
    return text


def _decoded(data: bytes) -> str:
    text = filetypes.decode_text(data)
    if text is None:
        raise PermanentError("The file is not readable text (it should be UTF-8).", code="damaged_file")
    return text


# --- HTML -----------------------------------------------------------------------------------------


def extract_html(data: bytes, *, limits: Limits = Limits(), **_: Any) -> Extracted:
    """The main text of a web page: no navigation, header, footer, sidebars, forms, scripts or styles.

    When the page marks its content with ``<main>`` or ``<article>``, only that is kept.

    Args:
        data: The page's bytes (UTF-8, UTF-16 with BOM, or the charset its ``<meta>`` declares).
        limits: ``max_chars``.

    Returns:
        The text, with metadata ``title`` when the page has one.

    Raises:
        PermanentError: Not decodable, or no readable text.
    """
    page = filetypes.decode_html(data)
    if page is None:
        raise PermanentError("The web page is not readable text.", code="damaged_file")
    converted = html_to_text(page)
    metadata = {"title": converted.title} if converted.title else {}
    return _finish(converted.text, Kind.HTML, metadata, limits, "The web page contains no readable text.")


@dataclasses.dataclass(frozen=True)
class HtmlText:
    """Text of an HTML document and what was set aside from it."""

    text: str
    title: str = ""
    quoted: str = ""
    signature: str = ""


def html_to_text(page: str, *, email_body: bool = False) -> HtmlText:
    """Convert HTML to text with the standard library's parser.

    Args:
        page: The HTML source.
        email_body: Treat the page as an email body: keep headers and footers (emails have no site
            chrome) and set aside quoted replies (``<blockquote>``, Gmail, Outlook, Apple and Thunderbird
            quote containers) and signature containers instead of keeping them.

    Returns:
        The text, the page title, and the quoted and signature text that was set aside.
    """
    parser = _HtmlToText(chrome=not email_body, email_body=email_body)
    parser.feed(page)
    parser.close()
    text = parser.result()
    if not text.strip() and not email_body:
        # A page whose only text sits in, say, a <header> still has something to say.
        fallback = _HtmlToText(chrome=False, email_body=False)
        fallback.feed(page)
        fallback.close()
        text = fallback.result()
    return HtmlText(text=text, title=_squash(" ".join(parser.title)), quoted=_squash_lines(parser.buckets["quoted"]),
                    signature=_squash_lines(parser.buckets["signature"]))


class _HtmlToText(HTMLParser):
    NEVER_TEXT = frozenset({"script", "style", "noscript", "template", "head", "svg", "math", "iframe", "object",
                            "embed", "canvas", "video", "audio", "map", "select", "datalist", "button", "textarea"})
    CHROME = frozenset({"nav", "header", "footer", "aside", "form", "dialog", "menu"})
    CHROME_ROLES = frozenset({"navigation", "banner", "contentinfo", "complementary", "search", "menu", "menubar",
                              "dialog", "alertdialog"})
    BLOCKS = frozenset({"p", "div", "section", "article", "main", "br", "hr", "li", "ul", "ol", "dl", "dt", "dd",
                        "h1", "h2", "h3", "h4", "h5", "h6", "table", "tr", "blockquote", "pre", "address",
                        "figure", "figcaption", "details", "summary", "fieldset", "center"})
    CELLS = frozenset({"td", "th"})
    QUOTE_CLASSES = ("gmail_quote", "yahoo_quoted", "moz-cite-prefix", "protonmail_quote", "quote")
    QUOTE_IDS = ("divrplyfwdmsg", "appendonsend", "mail-editor-reference-message-container")
    SIGNATURE_CLASSES = ("gmail_signature", "moz-signature", "signature")
    SIGNATURE_IDS = ("signature", "ms-outlook-mobile-signature")

    def __init__(self, *, chrome: bool, email_body: bool):
        super().__init__(convert_charrefs=True)
        self.skip_chrome = chrome
        self.email_body = email_body
        self.buckets: dict[str, list[str]] = {"body": [], "main": [], "quoted": [], "signature": []}
        self.title: list[str] = []
        self._route: tuple[str, int, str | None] | None = None  # (tag, depth, bucket or None to drop)
        self._main_depth = 0
        self._main_tag = ""
        self._pre = 0
        self._in_title = False
        self._saw_main = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title" and (self._route is None or self._route[0] == "head"):  # not an <svg> <title>
            self._in_title = True
            return
        if self._route is not None:
            route_tag, depth, bucket = self._route
            if tag == route_tag:
                self._route = (route_tag, depth + 1, bucket)
            if tag == "body" and route_tag == "head":
                self._route = None  # <body> closes an unclosed <head>
            elif bucket is not None:
                self._break(tag)
            return
        bucket = self._bucket_for(tag, attrs)
        if bucket != "":
            self._route = (tag, 1, bucket)
            if bucket is not None:
                self._emit("\n", bucket)
            return
        if tag in ("main", "article") or dict(attrs).get("role") == "main":
            if self._main_depth == 0:
                self._main_tag = tag
            if tag == self._main_tag:
                self._main_depth += 1
                self._saw_main = True
        if tag == "pre":
            self._pre += 1
        self._break(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("br", "hr", "img", "input", "wbr"):
            if self._route is None or self._route[2] is not None:
                self._break(tag)
            return
        self.handle_starttag(tag, attrs)
        self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
            return
        if self._route is not None:
            route_tag, depth, bucket = self._route
            if tag == route_tag:
                self._route = None if depth <= 1 else (route_tag, depth - 1, bucket)
            if bucket is not None:
                self._break(tag)
            return
        if tag == "pre" and self._pre:
            self._pre -= 1
        if self._main_depth and tag == self._main_tag:
            self._main_depth -= 1
        self._break(tag)

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title.append(data)
            return
        if self._route is not None:
            if self._route[2] is not None:
                self._emit(data if self._pre else re.sub(r"\s+", " ", data), self._route[2])
            return
        self._emit(data if self._pre else re.sub(r"\s+", " ", data), None)

    def result(self) -> str:
        main = _squash_lines(self.buckets["main"])
        return main if self._saw_main and main.strip() else _squash_lines(self.buckets["body"])

    def _bucket_for(self, tag: str, attrs: list[tuple[str, str | None]]) -> str | None:
        """"" to keep the element, None to drop it, or the name of the bucket that receives it."""
        if tag in self.NEVER_TEXT:
            return None
        values = {name: (value or "") for name, value in attrs}
        if "hidden" in values or values.get("aria-hidden", "").lower() == "true":
            return None
        if self.email_body:
            classes = values.get("class", "").lower().split()
            ident = values.get("id", "").lower()
            if tag == "blockquote" or any(c in classes for c in self.QUOTE_CLASSES) or ident in self.QUOTE_IDS:
                return "quoted"
            if any(c in classes for c in self.SIGNATURE_CLASSES) or ident in self.SIGNATURE_IDS:
                return "signature"
            return ""
        if self.skip_chrome and (tag in self.CHROME or values.get("role", "").lower() in self.CHROME_ROLES):
            return None
        return ""

    def _break(self, tag: str) -> None:
        if tag in self.BLOCKS:
            self._emit("\n", self._route[2] if self._route else None)
        elif tag in self.CELLS:
            self._emit(" ", self._route[2] if self._route else None)

    def _emit(self, text: str, bucket: str | None) -> None:
        if bucket is not None:
            self.buckets[bucket].append(text)
            return
        self.buckets["body"].append(text)
        if self._main_depth:
            self.buckets["main"].append(text)


# --- Email ----------------------------------------------------------------------------------------


def extract_eml(data: bytes, *, rep_email: str = "", limits: Limits = Limits(), **_: Any) -> Extracted:
    """The author's own text of one email.

    The plain-text body is preferred, else the HTML body converted. Quoted replies (``>`` lines, "On …
    wrote:" blocks, Outlook's "-----Original Message-----" and "From: … Sent: …" blocks), forwarded
    messages and the signature (after ``-- `` or a sign-off such as "Best,") are set aside in the
    metadata, not dropped. Transfer encodings and charsets are decoded.

    Args:
        data: The RFC 5322 message.
        rep_email: The rep's address; the metadata says whether the rep wrote the email.
        limits: ``max_chars``.

    Returns:
        The author's text, with metadata ``subject``, ``date``, ``from_rep``, ``message_count`` and the
        set-aside ``quoted``, ``forwarded``, ``signature`` and ``sign_off`` when present.

    Raises:
        PermanentError: No text of the author's own.
    """
    mail = _parse_mail_guarded(data)
    metadata = _mail_metadata(mail, rep_email)
    metadata["message_count"] = 1
    if not mail.own.strip():
        raise PermanentError(_NO_OWN_TEXT if mail.quoted or mail.forwarded else "The email contains no text.",
                             code="no_text")
    return _finish(mail.own, Kind.EML, metadata, limits, "The email contains no text.")


def extract_mbox(data: bytes, *, rep_email: str = "", limits: Limits = Limits(), **_: Any) -> Extracted:
    """The authors' own text of every message in an mbox mailbox, one message per paragraph block.

    When ``rep_email`` wrote any of the messages, only the rep's messages are kept (a mailbox export
    holds what others sent too); otherwise all are.

    Args:
        data: The mailbox (mboxo, mboxrd or mboxcl: messages start at lines beginning with ``From ``).
        rep_email: The rep's address.
        limits: ``mbox_max_messages``, ``max_chars``.

    Returns:
        The messages' text, with metadata ``message_count``, ``messages_used``, ``messages_from_others``,
        ``messages_without_text``, ``messages_over_limit`` and the set-aside ``quoted``, ``forwarded``
        and ``signatures`` per message used.

    Raises:
        PermanentError: No message with text of its own.
    """
    raw_messages = _split_mbox(data)
    over_limit = max(0, len(raw_messages) - limits.mbox_max_messages)
    mails = [_parse_mail_guarded(raw) for raw in raw_messages[:limits.mbox_max_messages]]
    rep = rep_email.strip().lower()
    by_rep = [mail for mail in mails if rep and mail.sender == rep]
    chosen = by_rep or mails
    with_text = [mail for mail in chosen if mail.own.strip()]
    metadata: dict[str, Any] = {
        "message_count": len(raw_messages),
        "messages_used": len(with_text),
        "messages_from_others": len(mails) - len(by_rep) if by_rep else 0,
        "messages_without_text": len(chosen) - len(with_text),
        "messages_over_limit": over_limit,
    }
    set_aside = {
        "quoted": [_cap(mail.quoted) for mail in with_text if mail.quoted][:200],
        "forwarded": [_cap(text) for mail in with_text for text in mail.forwarded if text][:200],
        "signatures": sorted({_cap(mail.signature) for mail in with_text if mail.signature})[:50],
        "sign_offs": sorted({mail.sign_off for mail in with_text if mail.sign_off})[:50],
    }
    metadata.update({key: value for key, value in set_aside.items() if value})
    text = "\n\n".join(mail.own.strip() for mail in with_text)
    return _finish(text, Kind.MBOX, metadata, limits, "The mailbox contains no messages with text of their own.")


_NO_OWN_TEXT = "The email contains no text of its own, only quoted or forwarded messages."


@dataclasses.dataclass
class _Mail:
    own: str = ""
    quoted: str = ""
    forwarded: list[str] = dataclasses.field(default_factory=list)
    signature: str = ""
    sign_off: str = ""
    sender: str = ""
    subject: str = ""
    date: str = ""
    body_type: str = ""
    attachments: list[str] = dataclasses.field(default_factory=list)


def _parse_mail_guarded(data: bytes) -> _Mail:
    # The email package records defects rather than raising on malformed input, but a MIME tree nested
    # thousands deep still exhausts the recursion of Message.walk.
    try:
        return _parse_mail(data)
    except RecursionError as exc:
        raise PermanentError("The email's parts are nested too deeply to read.", code="damaged_file") from exc


def _parse_mail(data: bytes) -> _Mail:
    message = email.message_from_bytes(data, policy=email.policy.default)
    mail = _Mail(sender=_header_address(message, "from"), subject=_header_text(message, "subject"),
                 date=_header_date(message))
    try:
        body = message.get_body(preferencelist=("plain", "html"))
    except Exception:  # a malformed MIME tree: fall back to the first text part found by walking it
        body = None
    if body is None:
        body = next((part for part in message.walk() if part.get_content_maintype() == "text"), None)
    quoted_parts: list[str] = []
    signature_html = ""
    if body is not None:
        mail.body_type = body.get_content_type()
        raw = _part_text(body)
        if mail.body_type == "text/html":
            converted = html_to_text(raw, email_body=True)
            raw, signature_html = converted.text, converted.signature
            if converted.quoted:
                quoted_parts.append(converted.quoted)
        split = _split_reply(raw)
        mail.own, mail.signature, mail.sign_off = split.own, split.signature or signature_html, split.sign_off
        quoted_parts[:0] = [split.quoted] if split.quoted else []
        mail.forwarded.extend(split.forwarded)
    for part in message.walk():
        if part.get_content_type() == "message/rfc822":
            mail.forwarded.append(_forwarded_attachment(part))
        elif part is not body and part.get_content_disposition() == "attachment":
            mail.attachments.append(part.get_filename() or part.get_content_type())
    # Quoted text that is really a forward (Gmail puts forwards inside its quote container).
    for text in quoted_parts:
        if _FORWARD_MARKER.search(text[:500]):
            mail.forwarded.append(text)
        else:
            mail.quoted = f"{mail.quoted}\n\n{text}".strip()
    return mail


def _mail_metadata(mail: _Mail, rep_email: str) -> dict[str, Any]:
    metadata: dict[str, Any] = {"subject": mail.subject, "date": mail.date, "body_type": mail.body_type}
    if rep_email:
        metadata["from_rep"] = mail.sender == rep_email.strip().lower()
    for key, value in (("quoted", _cap(mail.quoted)), ("forwarded", [_cap(f) for f in mail.forwarded if f]),
                       ("signature", _cap(mail.signature)), ("sign_off", mail.sign_off),
                       ("attachments", mail.attachments[:50])):
        if value:
            metadata[key] = value
    return {key: value for key, value in metadata.items() if value != ""}


def _forwarded_attachment(part: email.message.Message) -> str:
    inner = part.get_payload()
    inner = inner[0] if isinstance(inner, list) and inner else inner
    if not isinstance(inner, email.message.Message):
        return ""
    try:
        body = inner.get_body(preferencelist=("plain", "html")) if hasattr(inner, "get_body") else None
    except Exception:
        body = None
    text = ""
    if body is not None:
        text = _part_text(body)
        if body.get_content_type() == "text/html":
            text = html_to_text(text, email_body=True).text
    subject = _header_text(inner, "subject")
    return f"Subject: {subject}\n\n{text}".strip() if subject else text.strip()


def _part_text(part: email.message.Message) -> str:
    """A text part's content, transfer encoding and charset decoded, tolerating wrong or unknown charsets."""
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    declared = part.get_content_charset()
    for charset in (declared, "utf-8"):
        if not charset:
            continue
        try:
            return payload.decode(charset)
        except (LookupError, UnicodeDecodeError):
            continue
    # Undeclared or wrong 8-bit text is most often Windows-1252 (a superset of Latin-1's printable range).
    return payload.decode("cp1252", errors="replace")


def _header_text(message: email.message.Message, name: str) -> str:
    try:
        value = message.get(name)
    except Exception:  # the email package can raise on hostile header syntax; a header is not essential
        return ""
    return _squash(str(value)) if value is not None else ""


def _header_address(message: email.message.Message, name: str) -> str:
    try:
        value = message.get(name)
        addresses = getattr(value, "addresses", None)
        if addresses:
            return addresses[0].addr_spec.lower()
    except Exception:
        pass
    return email.utils.parseaddr(_header_text(message, name))[1].lower()


def _header_date(message: email.message.Message) -> str:
    try:
        value = message.get("date")
        moment = getattr(value, "datetime", None)
        return moment.isoformat() if moment else ""
    except Exception:
        return ""


def _split_mbox(data: bytes) -> list[bytes]:
    # A message starts at every line beginning "From " (RFC 4155); mboxrd writers escape body lines
    # that begin so as ">From ", undone below.
    starts = [match.start() for match in re.finditer(rb"(?m)^From ", data)]
    messages = []
    for index, start in enumerate(starts):
        end = starts[index + 1] if index + 1 < len(starts) else len(data)
        chunk = data[start:end]
        newline = chunk.find(b"\n")
        body = chunk[newline + 1:] if newline >= 0 else b""
        body = re.sub(rb"(?m)^>(>*From )", rb"\1", body)
        if body.strip():
            messages.append(body)
    return messages


@dataclasses.dataclass
class _Reply:
    own: str
    quoted: str
    forwarded: list[str]
    signature: str
    sign_off: str


_FORWARD_MARKER = re.compile(
    r"^[ \t]*(?:-{2,}[ \t]*Forwarded message[ \t]*-{2,}|Begin forwarded message:|-{2,}[ \t]*Forwarded by\b)",
    re.I | re.M)
_ORIGINAL_MARKER = re.compile(r"^[ \t]*-{2,}[ \t]*Original Message[ \t]*-{2,}[ \t]*$|^[ \t]*_{10,}[ \t]*$", re.I)
_ON_WROTE = re.compile(
    r"^[ \t]*(?:On\b.{0,300}\bwrote|Le\b.{0,300}\ba écrit|Am\b.{0,300}\bschrieb|El\b.{0,300}\bescribió"
    r"|Il\b.{0,300}\bha scritto|Op\b.{0,300}\bschreef)[ \t]*:[ \t]*$", re.I | re.S)
_OUTLOOK_FROM = re.compile(r"^[ \t]*\*?(?:From|Von|De|Van)\*?:[ \t]*\S", re.I)
_OUTLOOK_NEXT = re.compile(r"^[ \t]*\*?(?:Sent|Date|Gesendet|Envoyé|Enviado|Verzonden|To|Subject)\*?:", re.I)
_SIGN_OFF = re.compile(
    r"^[ \t]*(?:best|best regards|best wishes|kind regards|regards|warm regards|warmest regards|warmly|cheers"
    r"|thanks|thanks so much|thanks again|thanks in advance|many thanks|thank you|thank you so much|sincerely"
    r"|yours|yours truly|yours sincerely|all the best|all best|talk soon|speak soon|take care|have a great day"
    r"|have a great week|looking forward|br|rgds|thx|ty)[ \t]*[,.!]*[ \t]*$", re.I)
_SIGNATURE_MAX_LINES = 7
_SIGNATURE_LINE_CHARS = 80


def _split_reply(text: str) -> _Reply:
    """Separate an email body into the author's text, quoted replies, forwards and the signature."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    own: list[str] = []
    quoted: list[str] = []
    forwarded: list[str] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        rest = "\n".join(lines[index:index + 8])
        if _FORWARD_MARKER.match(rest):
            forwarded.append("\n".join(lines[index:]).strip())
            break
        if _ORIGINAL_MARKER.match(line) and (line.strip("_ \t") or _OUTLOOK_FROM.match(_next_nonblank(lines, index))):
            quoted.extend(lines[index:])
            break
        if _OUTLOOK_FROM.match(line) and _outlook_header_follows(lines, index):
            quoted.extend(lines[index:])
            break
        attribution = _attribution_length(lines, index)
        if attribution:
            quoted.extend(lines[index:index + attribution])
            index += attribution
            continue
        if line.lstrip().startswith(">"):
            quoted.append(line)
        else:
            own.append(line)
        index += 1
    body, signature, sign_off = _split_signature(own)
    return _Reply(own="\n".join(body).strip(), quoted="\n".join(quoted).strip(), forwarded=forwarded,
                  signature=signature, sign_off=sign_off)


def _next_nonblank(lines: list[str], index: int) -> str:
    return next((line for line in lines[index + 1:index + 4] if line.strip()), "")


def _outlook_header_follows(lines: list[str], index: int) -> bool:
    following = [line for line in lines[index + 1:index + 6] if line.strip()]
    return sum(1 for line in following if _OUTLOOK_NEXT.match(line)) >= 2


def _attribution_length(lines: list[str], index: int) -> int:
    """Lines taken by an "On … wrote:" attribution starting here (mail clients wrap it over up to three)."""
    first = lines[index].strip()
    if not first or first.startswith(">"):
        return 0
    for count in (1, 2, 3):
        candidate = " ".join(line.strip() for line in lines[index:index + count])
        if _ON_WROTE.match(candidate):
            return count
    return 0


def _split_signature(lines: list[str]) -> tuple[list[str], str, str]:
    for index, line in enumerate(lines):
        if line in ("-- ", "--"):  # RFC 3676 4.3 signature separator (and its trimmed form)
            return lines[:index], "\n".join(lines[index + 1:]).strip(), ""
    content = [index for index, line in enumerate(lines) if line.strip()]
    for position in range(len(content) - 1, max(-1, len(content) - 1 - _SIGNATURE_MAX_LINES), -1):
        index = content[position]
        if _SIGN_OFF.match(lines[index]):
            tail = [line for line in lines[index + 1:] if line.strip()]
            if all(len(line) <= _SIGNATURE_LINE_CHARS for line in tail) and position > 0:
                return lines[:index], "\n".join(lines[index:]).strip(), lines[index].strip()
            break
    return lines, "", ""


# --- Transcripts ----------------------------------------------------------------------------------


def extract_vtt(data: bytes, *, rep_name: str = "", limits: Limits = Limits(), **_: Any) -> Extracted:
    """Spoken lines of a WebVTT transcript: no timings, cue ids, notes, styles or tags.

    Speakers come from ``<v Name>`` voice spans or ``Name:`` prefixes. When the rep is among the
    speakers only the rep's lines are kept; otherwise all lines are, each turn prefixed with its speaker.
    Consecutive lines of one speaker become one paragraph.

    Args:
        data: The .vtt bytes.
        rep_name: The rep's name, matched to speakers by full name or first name.
        limits: ``max_chars``.

    Returns:
        The lines, with metadata ``cues``, ``speakers``, ``rep_speaker`` and ``turns``.

    Raises:
        PermanentError: No spoken lines.
    """
    return _transcript(_vtt_cues(_decoded(data)), Kind.VTT, rep_name, limits)


def extract_srt(data: bytes, *, rep_name: str = "", limits: Limits = Limits(), **_: Any) -> Extracted:
    """Spoken lines of a SubRip (.srt) transcript; the same rules as ``extract_vtt``.

    Args:
        data: The .srt bytes.
        rep_name: The rep's name.
        limits: ``max_chars``.

    Returns:
        The lines, with metadata ``cues``, ``speakers``, ``rep_speaker`` and ``turns``.

    Raises:
        PermanentError: No spoken lines.
    """
    return _transcript(_srt_cues(_decoded(data)), Kind.SRT, rep_name, limits)


@dataclasses.dataclass
class _Cue:
    start: float
    end: float
    segments: list[tuple[str | None, str]]  # (speaker named by a voice tag, text line)


_TIMING = re.compile(
    r"^\s*((?:\d+:)?\d{1,2}:\d{2}[.,]\d{1,3})\s*-->\s*((?:\d+:)?\d{1,2}:\d{2}[.,]\d{1,3})")
_VOICE = re.compile(r"<v(?:\.[^\s>]*)?[ \t]+([^>]*)>", re.I)
_TAG = re.compile(r"</?[A-Za-z][^>]*>|<\d[\d:.]*>")  # markup and VTT karaoke timestamps
_ASS_TAG = re.compile(r"\{\\[^}]*\}")  # SubRip files carry ASS override tags such as {\an8}
_SPEAKER_LABEL = re.compile(r"^(?:>>\s*)?([^\W\d_][\w.'’-]*(?:[ ][\w.'’-]+){0,3})[ \t]*:[ \t]+(\S.*)$")
_NEW_PARAGRAPH_GAP_S = 2.0


def _vtt_cues(text: str) -> list[_Cue]:
    blocks = re.split(r"\n[ \t]*\n", _newlines(text).strip())
    cues = []
    for block in blocks[1:]:  # the first block is the WEBVTT header and its metadata
        lines = block.split("\n")
        timing_at = next((i for i, line in enumerate(lines[:2]) if "-->" in line), None)
        if timing_at is None:
            continue  # NOTE, STYLE and REGION blocks, or a broken cue
        timing = _TIMING.match(lines[timing_at])
        if not timing:
            continue
        segments: list[tuple[str | None, str]] = []
        speaker: str | None = None
        for payload in lines[timing_at + 1:]:
            for piece in re.split(r"(<v(?:\.[^\s>]*)?[ \t]+[^>]*>)", payload):
                voice = _VOICE.fullmatch(piece)
                if voice:
                    speaker = _squash(voice.group(1)) or None
                    continue
                line = _squash(html.unescape(_TAG.sub("", piece)))
                if line:
                    segments.append((speaker, line))
        cues.append(_Cue(_seconds(timing.group(1)), _seconds(timing.group(2)), segments))
    return cues


def _srt_cues(text: str) -> list[_Cue]:
    cues = []
    for block in re.split(r"\n[ \t]*\n", _newlines(text).strip()):
        lines = block.split("\n")
        timing_at = next((i for i, line in enumerate(lines[:3]) if "-->" in line), None)
        if timing_at is None:
            continue
        timing = _TIMING.match(lines[timing_at])
        if not timing:
            continue
        segments: list[tuple[str | None, str]] = []
        for payload in lines[timing_at + 1:]:
            line = _squash(html.unescape(_ASS_TAG.sub("", _TAG.sub("", payload))))
            if line:
                segments.append((None, line))
        cues.append(_Cue(_seconds(timing.group(1)), _seconds(timing.group(2)), segments))
    return cues


def _transcript(cues: list[_Cue], kind: Kind, rep_name: str, limits: Limits) -> Extracted:
    # "Name: text" prefixes count as speaker labels only in a transcript that is labelled: some name
    # labels two lines or more, or the rep's name labels one. Elsewhere "Note: the demo is Tuesday" is text.
    labels: dict[str, int] = {}
    for cue in cues:
        for speaker, line in cue.segments:
            label = _SPEAKER_LABEL.match(line)
            if speaker is None and label and all(word[0].isupper() or word[0].isdigit()
                                                 for word in label.group(1).split()):
                labels[label.group(1)] = labels.get(label.group(1), 0) + 1
    labelled = any(count >= 2 or _same_person(name, rep_name) for name, count in labels.items())
    accepted = set(labels) if labelled else set()

    turns: list[tuple[str | None, list[str]]] = []
    current: str | None = None
    previous_end = None
    for cue in cues:
        gap = cue.start - previous_end if previous_end is not None else 0.0
        previous_end = cue.end
        for voice, line in cue.segments:
            speaker = voice
            label = _SPEAKER_LABEL.match(line) if voice is None else None
            if label and label.group(1) in accepted:
                speaker, line = label.group(1), label.group(2).strip()
            line = re.sub(r"^(?:>>|-)\s*", "", line).strip()
            if speaker is None:
                speaker = current  # a line without a label continues the current speaker's turn
            if not line:
                continue
            if turns and turns[-1][0] == speaker and gap < _NEW_PARAGRAPH_GAP_S:
                if turns[-1][1][-1] != line:  # rolling captions repeat the previous line
                    turns[-1][1].append(line)
            else:
                turns.append((speaker, [line]))
            current, gap = speaker, 0.0

    speakers: list[str] = []
    for speaker, _lines in turns:
        if speaker and speaker not in speakers:
            speakers.append(speaker)
    rep_speakers = {speaker for speaker in speakers if _same_person(speaker, rep_name)}
    if rep_speakers:
        kept = [" ".join(lines) for speaker, lines in turns if speaker in rep_speakers]
    elif speakers:
        kept = [f"{speaker}: {' '.join(lines)}" if speaker else " ".join(lines) for speaker, lines in turns]
    else:
        kept = [" ".join(lines) for _speaker, lines in turns]
    metadata: dict[str, Any] = {"cues": len(cues), "speakers": speakers[:50], "turns": len(kept)}
    if rep_speakers:
        metadata["rep_speaker"] = sorted(rep_speakers)
        metadata["other_speakers_dropped"] = len(speakers) - len(rep_speakers)
    return _finish("\n\n".join(kept), kind, metadata, limits, "This transcript has no spoken lines.")


def _same_person(speaker: str, rep_name: str) -> bool:
    """Whether a speaker label and the rep's name agree: same first name, and every further word of the
    shorter one is a word or an initial of the longer one ("Alex", "Alex R.", "Alex Rivera")."""
    said = [part.strip(".").casefold() for part in speaker.split() if part.strip(".")]
    rep = [part.strip(".").casefold() for part in rep_name.split() if part.strip(".")]
    if not said or not rep or said[0] != rep[0]:
        return False
    shorter, longer = sorted((said[1:], rep[1:]), key=len)
    return all(any(_same_word(part, word) for word in longer) for part in shorter)


def _same_word(one: str, other: str) -> bool:
    return one == other or (len(one) == 1 and other.startswith(one)) or (len(other) == 1 and one.startswith(other))


def _seconds(stamp: str) -> float:
    parts = stamp.replace(",", ".").split(":")
    value = 0.0
    for part in parts:
        value = value * 60 + float(part)
    return value


# --- Shared ---------------------------------------------------------------------------------------

_INVISIBLE = re.compile("[\u00ad\u200b\u200c\u200d\u2060\ufeff]")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def _finish(text: str, kind: Kind, metadata: dict[str, Any], limits: Limits, empty: str) -> Extracted:
    text = _tidy(text)
    if not text:
        raise PermanentError(empty, code="no_text")
    if len(text) > limits.max_chars:
        cut = text.rfind(" ", 0, limits.max_chars)
        metadata = {**metadata, "truncated": True, "chars_before_truncation": len(text)}
        text = text[:cut if cut > limits.max_chars // 2 else limits.max_chars].rstrip()
    metadata = {**metadata, "chars": len(text), "words": len(text.split())}
    return Extracted(text=text, kind=kind.value, metadata=metadata)


def _tidy(text: str) -> str:
    """NFC, Unix newlines, no invisible or control characters, single spaces, at most one blank line."""
    text = unicodedata.normalize("NFC", _newlines(text))
    text = _INVISIBLE.sub("", text)
    text = _CONTROL.sub(" ", text.replace("\u00a0", " "))
    lines = [re.sub(r"[ \t]+", " ", line).strip() for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _squash_lines(pieces: Iterable[str]) -> str:
    return _tidy("".join(pieces))


def _cap(text: str) -> str:
    return text if len(text) <= _SET_ASIDE_CHARS else text[:_SET_ASIDE_CHARS].rstrip() + " …"


def _mb(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"


_EXTRACTORS: dict[Kind, Callable[..., Extracted]] = {
    Kind.PDF: extract_pdf,
    Kind.DOCX: extract_docx,
    Kind.TEXT: extract_text,
    Kind.MARKDOWN: extract_markdown,
    Kind.HTML: extract_html,
    Kind.EML: extract_eml,
    Kind.MBOX: extract_mbox,
    Kind.VTT: extract_vtt,
    Kind.SRT: extract_srt,
}
