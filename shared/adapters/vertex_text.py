"""The production TextGenerator: Gemini on Vertex AI through ``google-genai`` (``vertexai=True``).

One ``generateContent`` call per draft (``POST .../publishers/google/models/<model>:generateContent``):

* ``systemInstruction`` carries the fixed rules and ``contents`` the user part of the prompt, whose
  outside text is fenced (``shared.drafting.prompt``); the system/user split keeps the rules in the role
  the model weighs above its input;
* structured output: ``responseMimeType: application/json`` with a ``responseSchema`` of ``subject``
  and ``body`` (both required strings), so the answer is parsed, never scraped;
* a low temperature (0.2): a follow-up should be steady, not creative;
* safety settings at ``BLOCK_MEDIUM_AND_ABOVE`` for harassment, hate, sexual and dangerous content; a
  blocked prompt or answer is a permanent failure, since asking again gives the same answer.

Errors: 429 → ``RateLimited``; 5xx and 408 → ``DependencyDown``; other 4xx → ``PermanentError``; a
network failure → ``DependencyDown``. Messages never include the prompt (it carries lead text).
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

from shared.adapters.vertex_embeddings import _transport_errors
from shared.drafting.generate import Generated, tidy
from shared.drafting.prompt import Prompt
from shared.errors import DependencyDown, PermanentError, RateLimited

log = logging.getLogger(__name__)

TEMPERATURE = 0.2
MAX_OUTPUT_TOKENS = 4096  # room for a 2.5 model's thinking as well as a ~150-word email
_SAFETY_CATEGORIES = ("HARM_CATEGORY_HARASSMENT", "HARM_CATEGORY_HATE_SPEECH", "HARM_CATEGORY_SEXUALLY_EXPLICIT",
                      "HARM_CATEGORY_DANGEROUS_CONTENT")
_BLOCKED_FINISH = frozenset({"SAFETY", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "RECITATION", "MODEL_ARMOR"})


class GeminiGenerator:
    """Drafts with a Gemini model on Vertex AI.

    Args:
        project: Google Cloud project id.
        location: Vertex AI region.
        model: Gemini model id (``gemini-2.5-flash``).
        client: a ready ``google.genai.Client``; built on first use when None.
        base_url: send requests here instead of Google's endpoint (a loopback stand-in in tests).
        credentials: ``google.auth`` credentials; None uses Application Default Credentials, or a static
            placeholder token when ``base_url`` is set.
        timeout: seconds for the request.
        temperature: sampling temperature.
    """

    def __init__(self, project: str, location: str, model: str = "gemini-2.5-flash", *, client: Any = None,
                 base_url: str | None = None, credentials: Any = None, timeout: float = 60.0,
                 temperature: float = TEMPERATURE):
        self.project = project
        self.location = location
        self.model = model
        self.temperature = temperature
        self._base_url = base_url
        self._credentials = credentials
        self._timeout = timeout
        self._client = client
        self._lock = threading.Lock()

    def _get_client(self) -> Any:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._build_client()
        return self._client

    def _build_client(self) -> Any:
        from shared.adapters.vertex import vertex_client

        return vertex_client(self.project, self.location, base_url=self._base_url, credentials=self._credentials,
                             timeout=self._timeout)

    def config(self, prompt: Prompt) -> Any:
        """The ``GenerateContentConfig`` of a request (exposed for tests)."""
        from google.genai import types

        schema = types.Schema(type=types.Type.OBJECT, required=["subject", "body"],
                              properties={"subject": types.Schema(type=types.Type.STRING),
                                          "body": types.Schema(type=types.Type.STRING)})
        return types.GenerateContentConfig(
            system_instruction=prompt.system, temperature=self.temperature, candidate_count=1,
            max_output_tokens=MAX_OUTPUT_TOKENS, response_mime_type="application/json", response_schema=schema,
            safety_settings=[types.SafetySetting(category=c, threshold="BLOCK_MEDIUM_AND_ABOVE")
                             for c in _SAFETY_CATEGORIES])

    def generate(self, prompt: Prompt) -> Generated:
        """See ``shared.drafting.generate.TextGenerator``."""
        try:
            response = self._get_client().models.generate_content(model=self.model, contents=prompt.user,
                                                                  config=self.config(prompt))
        except Exception as exc:  # noqa: BLE001 -- only known failures are translated; others re-raise
            mapped = _translate(exc, self.model)
            if mapped is exc:
                raise
            raise mapped from exc
        return _parse(response, self.model)

    def health(self) -> None:
        """Nothing cheap proves a generation model works without paying for a call; checks the client builds."""
        self._get_client()


def _parse(response: Any, model: str) -> Generated:
    feedback = getattr(response, "prompt_feedback", None)
    if feedback is not None and getattr(feedback, "block_reason", None):
        raise PermanentError(f"Vertex AI blocked the prompt ({_name(feedback.block_reason)}).",
                             code="generation_blocked", details={"model": model})
    candidates = getattr(response, "candidates", None) or []
    if not candidates:
        raise PermanentError("Vertex AI returned no candidate.", code="generation_empty", details={"model": model})
    finish = _name(getattr(candidates[0], "finish_reason", None))
    if finish in _BLOCKED_FINISH:
        raise PermanentError(f"Vertex AI stopped the answer ({finish}).", code="generation_blocked",
                             details={"model": model})
    text = "".join(part.text or "" for part in (getattr(candidates[0].content, "parts", None) or [])
                   if not getattr(part, "thought", False))
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise PermanentError(f"Vertex AI answered with text that is not the JSON asked for (finish {finish}).",
                             code="generation_malformed", details={"model": model}) from exc
    if not isinstance(data, dict) or not isinstance(data.get("subject"), str) or not isinstance(data.get("body"), str):
        raise PermanentError("Vertex AI's JSON lacks a subject or body string.", code="generation_malformed",
                             details={"model": model})
    version = getattr(response, "model_version", None) or model
    return tidy(data["subject"], data["body"], str(version))


def _name(value: Any) -> str:
    return str(getattr(value, "name", None) or getattr(value, "value", None) or value or "")


def _translate(exc: Exception, model: str) -> Exception:
    from google.genai import errors as genai_errors

    if isinstance(exc, genai_errors.APIError):
        status = exc.code or 0
        details = {"model": model, "status": status, "vertex_status": exc.status}
        message = f"Vertex AI generation answered {status} {exc.status}: {str(exc.message or '')[:300]}"
        log.warning("vertex generation error", extra={"fields": {"status": status, "vertex_status": exc.status}})
        if status == 429:
            return RateLimited(message, details=details)
        if status >= 500 or status == 408:
            return DependencyDown(message, details=details)
        if 400 <= status < 500:
            return PermanentError(message, code="generation_rejected", details=details)
        return DependencyDown(message, details=details)
    if isinstance(exc, _transport_errors()):
        return DependencyDown(f"Vertex AI generation unreachable: {type(exc).__name__}", details={"model": model})
    return exc
