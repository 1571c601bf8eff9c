"""The text-generation port: a fenced prompt in, a subject and body out.

Two implementations: ``shared.adapters.vertex_text.GeminiGenerator`` (Gemini on Vertex AI) and
``shared.adapters.offline_drafter.OfflineDrafter`` (deterministic, from the rep's own emails).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from shared.drafting.prompt import Prompt

MAX_SUBJECT_CHARS = 200
MAX_BODY_CHARS = 8_000


@dataclasses.dataclass(frozen=True)
class Generated:
    """A generated email.

    Attributes:
        subject: One line, no newline.
        body: Plain text, paragraphs separated by blank lines.
        model: The model (or ``offline-drafter``) that wrote it.
    """

    subject: str
    body: str
    model: str


@runtime_checkable
class TextGenerator(Protocol):
    model: str

    def generate(self, prompt: Prompt) -> Generated:
        """Write the email the prompt asks for.

        Raises:
            RateLimited / DependencyDown: the model is limiting or unavailable (retry later).
            PermanentError: the model refused the prompt or answered with something unusable.
        """
        ...


def tidy(subject: str, body: str, model: str) -> Generated:
    """A ``Generated`` with whitespace normalised and lengths capped, whatever the generator produced.

    Raises:
        PermanentError: the subject or body is empty.
    """
    from shared.errors import PermanentError

    subject = " ".join(str(subject or "").split())[:MAX_SUBJECT_CHARS]
    lines = [line.rstrip() for line in str(body or "").replace("\r\n", "\n").split("\n")]
    text = "\n".join(lines).strip()
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    if not subject or not text:
        raise PermanentError("The generator returned an empty subject or body.", code="empty_draft")
    return Generated(subject=subject, body=text[:MAX_BODY_CHARS], model=model)
