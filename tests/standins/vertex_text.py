"""``:generateContent`` on the Vertex stand-in, in Gemini's documented request and response shapes.

``install(standin)`` registers the route on an existing ``VertexStandIn`` and returns a ``GeminiRoute``
that records each request body (``systemInstruction``, ``contents``, ``generationConfig``,
``safetySettings``) and answers deterministically:

``{"candidates": [{"content": {"role": "model", "parts": [{"text": "<JSON>"}]}, "finishReason": "STOP",
"avgLogprobs": ...}], "usageMetadata": {"promptTokenCount", "candidatesTokenCount", "totalTokenCount"},
"modelVersion": "<model>-standin", "createTime", "responseId"}``

The JSON in ``parts[0].text`` is ``GeminiRoute.reply`` when a test sets it, else a fixed follow-up
whose subject carries a hash of the request, so equal requests get equal answers. A request without
``contents`` is refused with 400. Errors (429, 503) are injected with the stand-in's own
``fail_next(status, verb="generateContent")``; ``GeminiRoute.finish_reason`` makes the next answers
end with another finish reason (``SAFETY``) and no parts.
"""

from __future__ import annotations

import hashlib
import json
import threading
from typing import Any

from tests.standins.vertex import Call, Refusal, VertexStandIn, count_tokens

VERB = "generateContent"


class GeminiRoute:
    """The generateContent handler and what it saw."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.reply: dict[str, Any] | None = None
        self.finish_reason = "STOP"
        self._lock = threading.Lock()

    def __call__(self, call: Call) -> tuple[int, dict[str, Any]]:
        body = call.body
        contents = body.get("contents")
        if not isinstance(contents, list) or not contents:
            raise Refusal(400, "Unable to submit request because it has an empty contents field.")
        with self._lock:
            self.requests.append(body)
        prompt_text = json.dumps(body, sort_keys=True)
        digest = hashlib.sha256(prompt_text.encode()).hexdigest()[:8]
        answer = self.reply or {
            "subject": f"Following up ({digest})",
            "body": "Hi there,\n\nThanks for reaching out. Happy to walk you through how it works and answer "
                    "your questions.\n\nWould a short call next week work?\n\nBest,\nAlex",
        }
        text = json.dumps(answer)
        candidate: dict[str, Any] = {"finishReason": self.finish_reason, "avgLogprobs": -0.12}
        if self.finish_reason == "STOP":
            candidate["content"] = {"role": "model", "parts": [{"text": text}]}
        else:
            candidate["safetyRatings"] = [{"category": "HARM_CATEGORY_HARASSMENT", "probability": "MEDIUM",
                                           "blocked": True}]
        prompt_tokens = count_tokens(prompt_text)
        output_tokens = count_tokens(text)
        return 200, {
            "candidates": [candidate],
            "usageMetadata": {"promptTokenCount": prompt_tokens, "candidatesTokenCount": output_tokens,
                              "totalTokenCount": prompt_tokens + output_tokens},
            "modelVersion": f"{call.model}-standin",
            "createTime": "2025-01-01T00:00:00.000000Z",
            "responseId": digest,
        }

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.reply = None
            self.finish_reason = "STOP"


def install(standin: VertexStandIn) -> GeminiRoute:
    """Serve ``:generateContent`` on ``standin``; returns the route (a fresh one each call)."""
    route = GeminiRoute()
    standin.route(VERB, route)
    return route
