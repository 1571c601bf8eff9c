"""Text of scanned PDF pages, read from their embedded images by the ``tesseract`` command.

A scanned PDF carries one image per page and no text layer. ``ocr_pages`` takes those images with
pypdf (``page.images``), writes each to a temporary PNG and runs ``tesseract <file> stdout -l <lang>``
on it. The command line is used rather than a Python binding so that no extra dependency is needed and
a crash of the OCR engine ends one process, not the worker.

Everything is bounded: the number of pages read per document, the pixels of an image (checked from the
image's dictionary before it is decoded), the seconds per page and the seconds for the whole document.
A page that cannot be read is reported with a reason and never fails the document. The caller
(``extract.extract_pdf``) runs inside ``sandbox.run_limited``; the ``tesseract`` process inherits that
child's memory and CPU limits, so a hostile image cannot take more than the sandbox allows either.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from typing import Any


@dataclasses.dataclass(frozen=True)
class Settings:
    """How OCR runs and what it may cost.

    Attributes:
        binary: The ``tesseract`` command, looked up on ``PATH`` (or an absolute path).
        language: Tesseract's language code(s), e.g. ``"eng"`` or ``"eng+deu"``.
        max_pages: Pages OCR'd per document; further pages without text are listed as not read.
        max_images_per_page: Images OCR'd on one page (scanners put one per page; a few split it in bands).
        max_pixels: Largest image (width × height) decoded; larger ones are reported, not read.
        page_timeout_s: Seconds OCR may take for one page (all its images) before it is stopped.
        total_timeout_s: Seconds for all OCR of one document; pages left when it is spent are listed.
    """

    binary: str = "tesseract"
    language: str = "eng"
    max_pages: int = 20
    max_images_per_page: int = 4
    max_pixels: int = 25_000_000  # an A4 page scanned at 600 dpi is about 35 M; at 300 dpi about 8.7 M
    page_timeout_s: float = 30.0
    total_timeout_s: float = 30.0


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What OCR found in a document's pages without a text layer.

    Attributes:
        available: Whether the ``tesseract`` command was found; when False nothing else was tried.
        language: The language OCR read with.
        texts: Page number (1-based) → text read from that page, for pages where text was found.
        problems: Page number → a sentence saying why the page gave no text.
        not_read: Pages left unread because a page or time limit was reached.
    """

    available: bool
    language: str
    texts: dict[int, str] = dataclasses.field(default_factory=dict)
    problems: dict[int, str] = dataclasses.field(default_factory=dict)
    not_read: list[int] = dataclasses.field(default_factory=list)


def find_tesseract(binary: str = "tesseract") -> str | None:
    """The path of the ``tesseract`` command, or None when it is not installed.

    Args:
        binary: A command name looked up on ``PATH``, or a path.

    Returns:
        The executable's path, or None.
    """
    return shutil.which(binary)


def ocr_pages(pages: Sequence[tuple[int, Any]], *, settings: Settings = Settings()) -> Outcome:
    """Read the text of PDF pages from their embedded images.

    Call it while pypdf's configuration for untrusted files is applied (``extract._pypdf_configuration``):
    decoding an image is bounded by it as well.

    Args:
        pages: ``(page number, pypdf PageObject)`` pairs, page numbers 1-based, in reading order.
        settings: The command, language and limits.

    Returns:
        The text per page, a reason per page that gave none, and the pages not read.
    """
    from pypdf.errors import LimitReachedError

    path = find_tesseract(settings.binary)
    outcome = Outcome(available=path is not None, language=settings.language)
    if path is None:
        return outcome
    deadline = time.monotonic() + settings.total_timeout_s
    with tempfile.TemporaryDirectory(prefix="ocr-") as workdir:
        for position, (number, page) in enumerate(pages):
            remaining = deadline - time.monotonic()
            if position >= settings.max_pages or remaining <= 0:
                outcome.not_read.extend(number for number, _ in pages[position:])
                break
            try:
                text, problem = _ocr_page(page, path, settings, workdir, remaining)
            except MemoryError:
                raise  # the sandbox reports it for the whole document
            except LimitReachedError:
                text, problem = "", "its image is too large to decode within the limits for uploaded files."
            except Exception as exc:  # a damaged image loses its page only; the reason is reported
                text, problem = "", f"its image could not be decoded ({type(exc).__name__})."
            if text:
                outcome.texts[number] = text
            else:
                outcome.problems[number] = problem
    return outcome


def _ocr_page(page: Any, path: str, settings: Settings, workdir: str, remaining_s: float) -> tuple[str, str]:
    """The text of one page's images, or ``("", reason)``."""
    image_ids = list(page.images.keys())
    if not image_ids:
        return "", "it has no image to read (only drawings)."
    texts: list[str] = []
    problems: list[str] = []
    page_deadline = time.monotonic() + min(settings.page_timeout_s, remaining_s)
    for image_id in image_ids[:settings.max_images_per_page]:
        size = _declared_size(page, image_id)
        if size is not None and size[0] * size[1] > settings.max_pixels:
            problems.append(f"its image is {size[0]}×{size[1]} pixels, more than the {settings.max_pixels:,} "
                            "that are read.")
            continue
        image = _prepared(page.images[image_id].image)
        if image.width * image.height > settings.max_pixels:  # inline images declare no size up front
            problems.append(f"its image is larger than the {settings.max_pixels:,} pixels that are read.")
            continue
        file = os.path.join(workdir, "page.png")
        image.save(file, format="PNG")
        budget = page_deadline - time.monotonic()
        if budget <= 0:
            problems.append("OCR ran out of time.")
            break
        text, problem = _tesseract(path, file, settings.language, _dpi(page, image.width), budget)
        if problem == _STOPPED:
            problem = (f"OCR was stopped at its time limit ({settings.page_timeout_s:g} s per page, "
                       f"{settings.total_timeout_s:g} s per document).")
        if text:
            texts.append(text)
        elif problem:
            problems.append(problem)
    if texts:
        return "\n\n".join(texts), ""
    return "", problems[0] if problems else "no text was found in its image."


def _tesseract(path: str, file: str, language: str, dpi: int, timeout_s: float) -> tuple[str, str]:
    """``tesseract`` on one image file: its text, or ``("", reason)``; the reason is ``""`` when it found
    nothing and ``_STOPPED`` when it outlasted ``timeout_s`` (the caller words that with its limits)."""
    # One thread: OpenMP's extra threads each reserve address space, which the sandbox's RLIMIT_AS
    # (inherited by this process) counts, and they gain little on one page-sized image. Nothing else
    # of this process's environment (credentials among it) is handed to the child.
    env = {"OMP_THREAD_LIMIT": "1"}
    try:
        done = subprocess.run([path, file, "stdout", "-l", language, "--dpi", str(dpi)], capture_output=True,
                              timeout=timeout_s, env=env, stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired:
        return "", _STOPPED
    except OSError as exc:
        return "", f"the OCR program could not be started ({exc.strerror or type(exc).__name__})."
    if done.returncode != 0:
        detail = _last_line(done.stderr)
        return "", f"OCR failed (exit status {done.returncode}{': ' + detail if detail else ''})."
    return done.stdout.decode("utf-8", errors="replace").strip(), ""


_STOPPED = "stopped"


def _declared_size(page: Any, image_id: str | list[str]) -> tuple[int, int] | None:
    """Width and height from an image XObject's dictionary, read without decoding the image.

    ``image_id`` is pypdf's key: a name, or a list of form names ending in the image's name. Inline
    images (``~0~``) have no XObject; None is returned and their size is checked after decoding.
    """
    names = [image_id] if isinstance(image_id, str) else list(image_id)
    if names[-1].startswith("~"):
        return None
    holder = page
    try:
        for name in names:
            xobject = holder["/Resources"]["/XObject"][name].get_object()
            holder = xobject
        return int(xobject["/Width"]), int(xobject["/Height"])
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def _prepared(image: Any) -> Any:
    """The image as grayscale (or bilevel) PNG-ready pixels; transparency is laid on white."""
    from PIL import Image

    if image.mode == "1":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("L")


def _dpi(page: Any, image_width: int) -> int:
    """The image's resolution if it spans the page's width, as scans do; tesseract sizes its text model
    by it and guesses 70 dpi (too low for most scans) when the file does not say."""
    try:
        page_inches = float(page.mediabox.width) / 72
    except (KeyError, TypeError, ValueError, AttributeError):
        return 300
    if page_inches <= 0:
        return 300
    return max(70, min(1200, round(image_width / page_inches)))


def _last_line(stderr: bytes) -> str:
    lines = [line.strip() for line in stderr.decode("utf-8", errors="replace").splitlines() if line.strip()]
    return lines[-1][:160] if lines else ""
