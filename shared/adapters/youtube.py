"""YouTube captions through ``youtube-transcript-api``: the ``TranscriptSource`` in every mode.

The library reads what the watch page reads: the watch HTML (for the InnerTube API key), the InnerTube
``player`` endpoint (for the caption tracks) and the ``timedtext`` XML of one track. All of it goes
through the ``requests.Session`` given here, which is how tests point it at a loopback stand-in and how
a timeout is imposed (the library passes none).

The local stack uses the same class (DESIGN §3: "needs internet; clear error offline"): without a
network the import fails with a sentence saying YouTube could not be reached.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Sequence
from typing import Any
from xml.etree.ElementTree import ParseError

import requests
from youtube_transcript_api import YouTubeTranscriptApi
from youtube_transcript_api import _errors as yt

from shared.errors import BadRequest, DependencyDown, NotFound, PermanentError, RateLimited
from shared.voice.sources import Transcript

log = logging.getLogger(__name__)

VIDEO_ID = re.compile(r"[A-Za-z0-9_-]{11}")
# A pause this long between two captions starts a new paragraph.
_PARAGRAPH_GAP_S = 2.5
# Cues that describe sound rather than speech ("[Music]", "[Applause]").
_SOUND_CUE = re.compile(r"\[[^\]]{1,40}\]|\([^)]{1,40}\)")


class TimeoutSession(requests.Session):
    """A ``requests.Session`` that applies a default timeout: the library never passes one."""

    def __init__(self, timeout: float = 20.0):
        super().__init__()
        self.default_timeout = timeout

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        kwargs.setdefault("timeout", self.default_timeout)
        return super().request(method, url, *args, **kwargs)


class YouTubeTranscripts:
    """Captions of public YouTube videos; implements ``shared.voice.sources.TranscriptSource``.

    Args:
        session: the HTTP session every request goes through (default: a ``TimeoutSession``). The
            library keeps cookies on it (YouTube's consent cookie), so calls are serialised.
        timeout: seconds per HTTP request when the session is built here.
    """

    def __init__(self, session: requests.Session | None = None, *, timeout: float = 20.0):
        self._session = session if session is not None else TimeoutSession(timeout)
        self._lock = threading.Lock()
        self._api: YouTubeTranscriptApi | None = None

    def transcript(self, video_id: str, *, languages: Sequence[str] = ("en",)) -> Transcript:
        """The captions of one video in the first of ``languages`` it has.

        Uploaded captions win over automatic ones in the same language; a regional variant (``en-GB``)
        counts for its base language (``en``) when the exact code is missing.

        Raises:
            BadRequest: ``video_id`` is not an 11-character YouTube id.
            NotFound, PermanentError, RateLimited, DependencyDown: see ``TranscriptSource``.
        """
        if not isinstance(video_id, str) or not VIDEO_ID.fullmatch(video_id):
            raise BadRequest("That is not a YouTube video id.")
        wanted = tuple(languages) or ("en",)
        with self._lock:
            try:
                if self._api is None:
                    self._api = YouTubeTranscriptApi(http_client=self._session)
                listing = self._api.list(video_id)
                track = _choose(listing, wanted)
                fetched = track.fetch()
            except yt.CouldNotRetrieveTranscript as exc:
                raise _translate(exc, video_id, wanted) from None
            except requests.Timeout:
                raise DependencyDown("YouTube did not answer in time; the import will be tried again.") from None
            except requests.ConnectionError:
                raise DependencyDown("Could not reach YouTube: there is no internet connection, or YouTube is "
                                     "unreachable from here. Try again when you are online.") from None
            except requests.RequestException as exc:
                log.warning("youtube request failed for video %s: %s", video_id, type(exc).__name__)
                raise DependencyDown("The request to YouTube failed; the import will be tried again.") from None
            except ParseError:
                raise PermanentError("YouTube sent captions for this video in a form that could not be read.",
                                     code="youtube_unreadable") from None
        text = _paragraphs(fetched.snippets)
        if not text:
            raise PermanentError("The captions of this YouTube video contain no words.", code="no_captions")
        return Transcript(text=text, language=fetched.language_code, is_generated=fetched.is_generated)


def _choose(listing: Any, wanted: tuple[str, ...]) -> Any:
    try:
        return listing.find_transcript(wanted)
    except yt.NoTranscriptFound:
        pass
    tracks = list(listing)
    for code in wanted:
        base = code.split("-")[0].lower()
        regional = [t for t in tracks if t.language_code.split("-")[0].lower() == base]
        if regional:
            # Uploaded captions first, as find_transcript orders them.
            return sorted(regional, key=lambda t: t.is_generated)[0]
    available = ", ".join(sorted({f"{t.language} ({t.language_code})" for t in tracks})) or "none"
    raise PermanentError(
        f"This YouTube video has no captions in {', '.join(wanted)}; it has captions in: {available}.",
        code="no_captions",
    )


def _paragraphs(snippets: Sequence[Any]) -> str:
    paragraphs: list[list[str]] = [[]]
    previous_end: float | None = None
    for snippet in snippets:
        words = " ".join(_SOUND_CUE.sub(" ", snippet.text).split())
        if not words:
            continue
        if previous_end is not None and snippet.start - previous_end > _PARAGRAPH_GAP_S and paragraphs[-1]:
            paragraphs.append([])
        paragraphs[-1].append(words)
        previous_end = snippet.start + snippet.duration
    return "\n\n".join(" ".join(p) for p in paragraphs if p)


def _translate(exc: yt.CouldNotRetrieveTranscript, video_id: str, wanted: tuple[str, ...]) -> Exception:
    """The project's error for one of the library's, with a sentence for the rep."""
    # Order matters: IpBlocked is a RequestBlocked, InvalidVideoId and VideoUnavailable are siblings.
    if isinstance(exc, yt.RequestBlocked):
        return RateLimited("YouTube is refusing requests from this server for now (too many requests); the "
                           "import will be tried again later.")
    if isinstance(exc, (yt.VideoUnavailable, yt.InvalidVideoId)):
        return NotFound("This YouTube video is unavailable: it may be private or removed, or the link may be "
                        "wrong.", code="video_unavailable")
    if isinstance(exc, yt.TranscriptsDisabled):
        return PermanentError("Captions are turned off for this YouTube video, so there is no transcript to "
                              "import. Upload a transcript file (VTT or SRT) instead.", code="no_captions")
    if isinstance(exc, yt.NoTranscriptFound):
        return PermanentError(f"This YouTube video has no captions in {', '.join(wanted)}.", code="no_captions")
    if isinstance(exc, yt.AgeRestricted):
        return PermanentError("This YouTube video is age-restricted, and its captions can only be read when "
                              "signed in. Upload a transcript file instead.", code="video_restricted")
    if isinstance(exc, yt.VideoUnplayable):
        reason = (exc.reason or "").strip().rstrip(".")
        detail = f" ({reason})" if reason else ""
        return PermanentError(f"YouTube will not play this video{detail}. If it is private, make it public or "
                              "unlisted, or upload a transcript file instead.", code="video_unplayable")
    if isinstance(exc, yt.PoTokenRequired):
        return PermanentError("YouTube requires a browser check to read this video's captions. Upload a "
                              "transcript file instead.", code="video_restricted")
    if isinstance(exc, yt.YouTubeRequestFailed):
        status = _failed_status(exc)
        if status >= 500 or status in (408, 425):
            return DependencyDown(f"YouTube answered HTTP {status}; the import will be tried again.")
        if status == 404:
            return NotFound("YouTube has no video at this link.", code="video_unavailable")
        return PermanentError(f"YouTube refused the request for this video's captions (HTTP {status}).",
                              code="youtube_refused")
    log.warning("youtube transcript for %s failed: %s", video_id, type(exc).__name__)
    return PermanentError("YouTube answered in a way that could not be read, so the captions of this video could "
                          "not be imported. Upload a transcript file instead.", code="youtube_unreadable")


def _failed_status(exc: yt.YouTubeRequestFailed) -> int:
    # The library keeps only str(HTTPError) ("503 Server Error: ..."); the HTTPError itself is the
    # exception's context, since it is raised inside the handler that caught it.
    response = getattr(exc.__context__, "response", None)
    status = getattr(response, "status_code", None)
    if isinstance(status, int):
        return status
    match = re.match(r"\s*(\d{3})\b", str(getattr(exc, "reason", "")))
    return int(match.group(1)) if match else 0
