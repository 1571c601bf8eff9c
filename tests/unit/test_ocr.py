"""OCR of scanned PDF pages with the real ``tesseract`` command, on PDFs built here from rendered text."""

from __future__ import annotations

import io
import os
import shutil
import stat
import time
from collections.abc import Sequence
from pathlib import Path

import pypdf
import pytest

from shared.errors import PermanentError
from shared.voice.extract import extract, extract_limited, extract_pdf
from shared.voice.ocr import Settings, ocr_pages

IN_CI = os.environ.get("CI", "").lower() == "true"


def needs_tesseract(test):
    """Mark a test that runs the real ``tesseract``: skipped where it is missing, except under CI.

    ``emulator`` because, like the emulator tests, it needs an outside program: under CI=true the suite's
    conftest turns a skip of such a test into a failure, and ``make test`` installs tesseract first
    (.ci/ensure-ocr).
    """
    test = pytest.mark.emulator(test)
    return pytest.mark.skipif(shutil.which("tesseract") is None and not IN_CI,
                              reason="tesseract is not installed (bash .ci/ensure-ocr installs it)")(test)


SCANNED_LINES = ["Quarterly pipeline review with Meridian Logistics", "The renewal discount expires on Thursday",
                 "Bring the saxophone and the pineapple"]
SCANNED_WORDS = ["quarterly", "pipeline", "meridian", "logistics", "renewal", "discount", "thursday", "saxophone",
                 "pineapple"]
MISSING = "/nonexistent/bin/tesseract"
FONTS = Path("/usr/share/fonts")


def scan(lines: Sequence[str] = ()) -> object:
    """A white A4-wide image at 300 dpi with ``lines`` drawn in black, as a scanner would produce."""
    from PIL import Image, ImageDraw, ImageFont

    fonts = sorted(FONTS.glob("**/DejaVuSans.ttf")) or sorted(FONTS.glob("**/*.ttf"))
    # 36 px at 300 dpi is about 9 pt: ordinary body text on a scanned letter.
    font = ImageFont.truetype(str(fonts[0]), 36) if fonts else ImageFont.load_default(size=36)
    image = Image.new("L", (2480, 1400), 255)
    draw = ImageDraw.Draw(image)
    for row, line in enumerate(lines):
        draw.text((150, 150 + row * 80), line, font=font, fill=0)
    return image


def pdf(pages: Sequence[object]) -> bytes:
    """A PDF made by fpdf2: a string becomes a page of text, an image a page holding only that image."""
    from fpdf import FPDF

    document = FPDF()
    for content in pages:
        document.add_page()
        if isinstance(content, str):
            document.set_font("Helvetica", size=12)
            document.multi_cell(0, 6, content)
        else:
            document.image(content, x=0, y=0, w=document.epw + 2 * document.l_margin)
    return bytes(document.output())


@pytest.fixture(scope="module")
def scanned_letter() -> bytes:
    return pdf(["A typed cover page.", scan(SCANNED_LINES)])


def words(text: str) -> set[str]:
    return {word.strip(".,;:").casefold() for word in text.split()}


# --- With tesseract -------------------------------------------------------------------------------


@needs_tesseract
@pytest.mark.parametrize("run", [extract, extract_limited], ids=["in-process", "sandboxed"])
def test_a_scanned_page_is_read_by_ocr_and_named_in_the_metadata(run, scanned_letter):
    result = run(scanned_letter)
    assert result.text.startswith("A typed cover page.\n\n")  # the text page keeps its place in front
    assert set(SCANNED_WORDS) <= words(result.text)
    meta = result.metadata
    assert meta["ocr"] == "available" and meta["ocr_language"] == "eng"
    assert meta["pages_without_text_list"] == [2] and meta["pages_ocr"] == [2]
    assert meta["ocr_problems"] == [] and meta["pages_not_ocr"] == []
    assert "1 of them were read by OCR (eng)" in meta["note"]


@needs_tesseract
def test_a_blank_scan_gives_a_readable_note_not_a_failure():
    result = extract(pdf(["Words on page one.", scan()]))
    assert result.text == "Words on page one."
    assert result.metadata["pages_ocr"] == []
    assert result.metadata["ocr_problems"] == [{"page": 2, "problem": "no text was found in its image."}]
    assert "Page 2: no text was found in its image." in result.metadata["note"]


@needs_tesseract
def test_a_pdf_of_blank_scans_only_says_ocr_found_nothing():
    with pytest.raises(PermanentError, match="OCR found no text in them") as caught:
        extract(pdf([scan(), scan()]))
    assert caught.value.code == "no_text"


@needs_tesseract
def test_a_failing_ocr_run_is_recorded_for_its_page_and_the_rest_is_kept(scanned_letter):
    result = extract_pdf(scanned_letter, ocr=Settings(language="zzz"))  # no such language data
    assert result.text == "A typed cover page."
    [problem] = result.metadata["ocr_problems"]
    assert problem["page"] == 2 and problem["problem"].startswith("OCR failed (exit status ")
    assert result.metadata["ocr_language"] == "zzz"


@needs_tesseract
def test_pages_past_the_ocr_page_cap_are_listed_not_read():
    data = pdf([scan(["Alpha pineapple"]), "Typed middle.", scan(["Omega saxophone"])])
    result = extract_pdf(data, ocr=Settings(max_pages=1))
    assert "pineapple" in words(result.text) and "saxophone" not in words(result.text)
    assert result.metadata["pages_ocr"] == [1] and result.metadata["pages_not_ocr"] == [3]
    assert "1 were not read by OCR (page or time limit)" in result.metadata["note"]


@needs_tesseract
def test_an_image_over_the_pixel_cap_is_not_decoded(scanned_letter):
    result = extract_pdf(scanned_letter, ocr=Settings(max_pixels=1_000_000))
    assert result.text == "A typed cover page."
    assert result.metadata["ocr_problems"] == [
        {"page": 2, "problem": "its image is 2480×1400 pixels, more than the 1,000,000 that are read."}]


@needs_tesseract
def test_a_spent_time_budget_leaves_pages_listed_as_not_read(scanned_letter):
    result = extract_pdf(scanned_letter, ocr=Settings(total_timeout_s=0))
    assert result.metadata["pages_ocr"] == [] and result.metadata["pages_not_ocr"] == [2]


def test_a_page_that_outlasts_its_timeout_is_stopped(scanned_letter, tmp_path):
    # A stand-in program that never answers, so the timeout is what ends the call; nothing is mocked.
    stuck = tmp_path / "tesseract"
    stuck.write_text("#!/bin/sh\nexec sleep 30\n")
    stuck.chmod(stuck.stat().st_mode | stat.S_IXUSR)
    reader = pypdf.PdfReader(io.BytesIO(scanned_letter))
    started = time.monotonic()
    outcome = ocr_pages([(2, reader.pages[1])], settings=Settings(binary=str(stuck), page_timeout_s=0.5))
    assert time.monotonic() - started < 10
    assert outcome.texts == {}
    assert outcome.problems == {2: "OCR was stopped at its time limit (0.5 s per page, 30 s per document)."}


# --- Without tesseract ----------------------------------------------------------------------------


def test_without_tesseract_ocr_is_not_available_and_nothing_is_tried(scanned_letter):
    reader = pypdf.PdfReader(io.BytesIO(scanned_letter))
    outcome = ocr_pages([(2, reader.pages[1])], settings=Settings(binary=MISSING))
    assert outcome.available is False
    assert (outcome.texts, outcome.problems, outcome.not_read) == ({}, {}, [])


def test_without_tesseract_the_sample_says_ocr_is_not_available(scanned_letter):
    result = extract_pdf(scanned_letter, ocr=Settings(binary=MISSING))
    assert result.text == "A typed cover page."
    assert result.metadata["ocr"] == "unavailable"
    assert result.metadata["pages_without_text_list"] == [2]
    assert "OCR is not available, so they were skipped." in result.metadata["note"]
    assert "pages_ocr" not in result.metadata and "ocr_language" not in result.metadata


def test_without_tesseract_a_fully_scanned_pdf_is_refused_with_the_reason():
    with pytest.raises(PermanentError, match="OCR is not available") as caught:
        extract_pdf(pdf([scan(SCANNED_LINES)]), ocr=Settings(binary=MISSING))
    assert caught.value.code == "no_text"
