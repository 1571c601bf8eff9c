"""A loopback stand-in for the three YouTube requests ``youtube-transcript-api`` 1.2.5 makes.

What the library sends (``_transcripts.py`` / ``_settings.py``):

1. ``GET https://www.youtube.com/watch?v=<id>`` -- HTML in which it looks for ``"INNERTUBE_API_KEY":
   "<key>"`` (a page with ``class="g-recaptcha"`` and no key means the IP is blocked); a 429 here is
   ``IpBlocked``.
2. ``POST https://www.youtube.com/youtubei/v1/player?key=<key>`` with ``{"context": {"client":
   {"clientName": "ANDROID", ...}}, "videoId": <id>}`` -- JSON with ``playabilityStatus`` (``OK``;
   ``ERROR`` + "This video is unavailable"; ``LOGIN_REQUIRED`` + a reason) and
   ``captions.playerCaptionsTracklistRenderer.captionTracks[]`` (``baseUrl``, ``name.runs[0].text``,
   ``languageCode``, ``kind: "asr"`` for automatic captions). No ``captions`` means transcripts are
   disabled.
3. ``GET <baseUrl>`` (``/api/timedtext?...``) -- ``<transcript><text start= dur=>...</text>...``.

The library's URLs are absolute ``https://www.youtube.com`` ones, so tests give the adapter a session
on which ``RerouteAdapter`` sends every ``https://www.youtube.com`` request to this server instead,
over real HTTP on loopback (``session()`` builds one).
"""

from __future__ import annotations

import dataclasses
import html
import json
import urllib.parse

import requests
from requests.adapters import HTTPAdapter

from shared.adapters.youtube import TimeoutSession
from tests.standins.loopback import LoopbackStandIn, Reply, Request

API_KEY = "AIzaStandInInnertubeKey_0123456789"


@dataclasses.dataclass
class Video:
    """How the stand-in answers for one video id.

    ``state``: ``ok`` | ``no_captions`` | ``private`` | ``removed`` | ``age_restricted`` | ``bot_check``.
    ``tracks``: language code → (language name, automatic?, [(start, duration, text), ...]).
    """

    state: str = "ok"
    title: str = "A video"
    tracks: dict[str, tuple[str, bool, list[tuple[float, float, str]]]] = dataclasses.field(default_factory=dict)


class YouTubeStandIn(LoopbackStandIn):
    name = "youtube"

    def __init__(self) -> None:
        super().__init__()
        self.videos: dict[str, Video] = {}
        self.blocked = False  # answer the watch page with a reCAPTCHA page and no key
        self.route("GET", r"/watch", self._watch)
        self.route("POST", r"/youtubei/v1/player", self._player)
        self.route("GET", r"/api/timedtext", self._timedtext)

    def add_video(self, video_id: str, video: Video) -> None:
        self.videos[video_id] = video

    def reset(self) -> None:
        super().reset()
        self.videos.clear()
        self.blocked = False

    def session(self, timeout: float = 5.0) -> requests.Session:
        """A session that sends YouTube's URLs here (what tests inject into the adapter)."""
        session = TimeoutSession(timeout)
        session.mount("https://www.youtube.com/", RerouteAdapter(self.base_url))
        return session

    # -- routes ---------------------------------------------------------------------------------

    def _watch(self, request: Request) -> Reply:
        video_id = request.query.get("v", "")
        if self.blocked:
            return Reply(200, '<html><body><form><div class="g-recaptcha"></div></form></body></html>', "text/html")
        config = json.dumps({"INNERTUBE_API_KEY": API_KEY, "VIDEO_ID": video_id})
        page = f"<html><head><title>{html.escape(video_id)} - YouTube</title></head><body><script>ytcfg.set({config});" \
               "</script></body></html>"
        return Reply(200, page, "text/html; charset=utf-8")

    def _player(self, request: Request) -> Reply:
        if request.query.get("key") != API_KEY:
            return Reply(400, {"error": {"code": 400, "message": "API key not valid.", "status": "INVALID_ARGUMENT"}})
        body = request.json() or {}
        video_id = body.get("videoId", "")
        video = self.videos.get(video_id)
        if video is None or video.state == "removed":
            return Reply(200, {"playabilityStatus": {"status": "ERROR", "reason": "This video is unavailable"}})
        if video.state == "private":
            return Reply(200, {"playabilityStatus": {
                "status": "LOGIN_REQUIRED", "reason": "This video is private",
                "errorScreen": {"playerErrorMessageRenderer": {"subreason": {"runs": [
                    {"text": "If the owner of this video has granted you access, please sign in."}]}}}}})
        if video.state == "age_restricted":
            return Reply(200, {"playabilityStatus": {"status": "LOGIN_REQUIRED",
                                                     "reason": "This video may be inappropriate for some users."}})
        if video.state == "bot_check":
            return Reply(200, {"playabilityStatus": {"status": "LOGIN_REQUIRED",
                                                     "reason": "Sign in to confirm you’re not a bot"}})
        reply = {"playabilityStatus": {"status": "OK"},
                 "videoDetails": {"videoId": video_id, "title": video.title}}
        if video.state != "no_captions":
            tracks = []
            for code, (language, automatic, _) in video.tracks.items():
                query = urllib.parse.urlencode({"v": video_id, "lang": code, "fmt": "srv3"})
                track = {"baseUrl": f"https://www.youtube.com/api/timedtext?{query}",
                         "name": {"runs": [{"text": language}]}, "languageCode": code, "isTranslatable": False}
                if automatic:
                    track["kind"] = "asr"
                tracks.append(track)
            reply["captions"] = {"playerCaptionsTracklistRenderer": {"captionTracks": tracks,
                                                                      "translationLanguages": []}}
        return Reply(200, reply)

    def _timedtext(self, request: Request) -> Reply:
        video = self.videos.get(request.query.get("v", ""))
        track = video.tracks.get(request.query.get("lang", "")) if video else None
        if track is None:
            return Reply(404, "")
        cues = "".join(f'<text start="{start}" dur="{duration}">{html.escape(html.escape(text))}</text>'
                       for start, duration, text in track[2])
        return Reply(200, f'<?xml version="1.0" encoding="utf-8" ?><transcript>{cues}</transcript>',
                     "text/xml; charset=UTF-8")


class RerouteAdapter(HTTPAdapter):
    """Sends requests for one origin to a loopback base URL; the original host stays in ``Host``."""

    def __init__(self, base_url: str):
        super().__init__(max_retries=0)
        self._base = urllib.parse.urlsplit(base_url)

    def send(self, request: requests.PreparedRequest, **kwargs):  # type: ignore[override]
        parts = urllib.parse.urlsplit(request.url)
        request.headers["Host"] = parts.netloc
        request.url = urllib.parse.urlunsplit((self._base.scheme, self._base.netloc, parts.path, parts.query, ""))
        return super().send(request, **kwargs)
