"""Text extraction of a 200-page PDF: ``extract`` and ``extract_limited`` against bare pypdf.

The PDF is built with fpdf2 from pages of ordinary business prose (a heading and paragraphs that fill
the page), so the text layer looks like a real deck or proposal rather than one line per page.

Time: the median of REPEATS runs of each variant in this process, on the same bytes, reported with its
ratio to bare pypdf (``PdfReader(...).pages[i].extract_text()`` for every page). ``extract_limited``
includes what the pipeline pays for the sandbox: a fork, the limits, the result pickled back.

Memory: each variant once in a fresh interpreter that imports what it needs, reads the PDF from a file
and runs; its peak resident set (``VmHWM``; the sandboxed child's ``ru_maxrss`` included) is
reported next to an interpreter that only imports the same modules, so the extraction's own share
shows.
"""

from __future__ import annotations

import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = 200
REPEATS = 5
SEED = 200

_WORDS = ("pipeline quarterly renewal onboarding integration forecast customer revenue pricing contract "
          "workflow dashboard adoption analytics migration rollout security compliance budget timeline "
          "stakeholder procurement discount pilot expansion retention support training deployment team "
          "region partner account opportunity proposal value outcome metric review planning").split()
_VERBS = "reduces improves supports tracks automates simplifies accelerates protects connects measures".split()


def _sentence(rng: random.Random) -> str:
    words = rng.sample(_WORDS, rng.randint(6, 12))
    words.insert(rng.randint(1, len(words) - 1), rng.choice(_VERBS))
    if rng.random() < 0.3:
        words.append(f"by {rng.randint(5, 60)}%")
    return " ".join(words).capitalize() + rng.choice([".", ".", ".", "?", "!"])


def _page(rng: random.Random, number: int) -> str:
    paragraphs = [f"Section {number}: {' '.join(rng.sample(_WORDS, 3)).title()}"]
    for _ in range(rng.randint(4, 6)):
        paragraphs.append(" ".join(_sentence(rng) for _ in range(rng.randint(3, 5))))
    return "\n\n".join(paragraphs)


def build_pdf() -> bytes:
    """The benchmark's 200-page PDF (deterministic)."""
    from fpdf import FPDF

    rng = random.Random(SEED)
    document = FPDF()
    document.set_compression(True)
    for number in range(1, PAGES + 1):
        document.add_page()
        document.set_font("Helvetica", size=10)
        document.multi_cell(0, 5, _page(rng, number))
    if document.pages_count != PAGES:  # a page of text that overflowed would change what is measured
        raise RuntimeError(f"built {document.pages_count} pages instead of {PAGES}")
    return bytes(document.output())


def _bare(data: bytes) -> str:
    import io

    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(data))
    return "\n\n".join(reader.pages[i].extract_text() or "" for i in range(len(reader.pages)))


def _extract(data: bytes) -> str:
    from shared.voice.extract import extract

    return extract(data, filename="deck.pdf").text


def _extract_limited(data: bytes) -> str:
    from shared.voice.extract import extract_limited

    return extract_limited(data, filename="deck.pdf").text


VARIANTS = {"pypdf": _bare, "extract": _extract, "extract_limited": _extract_limited}

_MEMORY_PROBE = r"""
import json, resource, sys
sys.path.insert(0, {root!r})
import pypdf, shared.voice.extract, shared.voice.sandbox, bench.bench_extract as b
data = open({path!r}, "rb").read()
if {variant!r}:
    b.VARIANTS[{variant!r}](data)
with open("/proc/self/status") as status:  # VmHWM: this image's own peak (ru_maxrss survives exec)
    self_kib = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
print(json.dumps({{"self_kib": self_kib,
                   "children_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}}))
"""


def _peak_mib(path: Path, variant: str) -> float:
    code = _MEMORY_PROBE.format(root=str(ROOT), path=str(path), variant=variant)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    usage = json.loads(out.stdout.strip().splitlines()[-1])
    # The sandboxed child is a fork of the probe: its peak includes what it inherited, so the larger of
    # the two peaks is the most either process held at once.
    return max(usage["self_kib"], usage["children_kib"]) / 1024


def run() -> dict:
    data = build_pdf()
    texts = {name: fn(data) for name, fn in VARIANTS.items()}  # warm-up, and the outputs compared below
    # Interleaved, so load from anything else on the machine falls on every variant alike.
    samples: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(REPEATS):
        for name, fn in VARIANTS.items():
            started = time.perf_counter()
            fn(data)
            samples[name].append(time.perf_counter() - started)
    seconds = {name: statistics.median(values) for name, values in samples.items()}
    with tempfile.TemporaryDirectory(prefix="bench-extract-") as tmp:
        path = Path(tmp) / "deck.pdf"
        path.write_bytes(data)
        baseline_mib = _peak_mib(path, "")
        peaks = {name: _peak_mib(path, name) for name in VARIANTS}
    base = seconds["pypdf"]
    figures: dict = {"pages": PAGES, "pdf_kib": round(len(data) / 1024, 1), "repeats": REPEATS,
                     "text_chars": len(texts["pypdf"]), "imports_only_peak_mib": round(baseline_mib, 1)}
    for name in VARIANTS:
        figures[name] = {"median_ms": round(seconds[name] * 1000, 1),
                         "peak_mib": round(peaks[name], 1),
                         "peak_over_imports_mib": round(peaks[name] - baseline_mib, 1)}
        if name != "pypdf":
            figures[name]["time_ratio"] = round(seconds[name] / base, 3)
            figures[name]["peak_ratio"] = round(peaks[name] / peaks["pypdf"], 3)
            # Same words out, whitespace aside: a ratio of two different jobs would mean nothing.
            figures[name]["same_words_as_pypdf"] = texts[name].split() == texts["pypdf"].split()
    return figures
