"""The google-genai client for Vertex AI, shared by the embedding and the text-generation adapters."""

from __future__ import annotations

from typing import Any


def vertex_client(project: str, location: str, *, base_url: str | None = None, credentials: Any = None,
                  timeout: float = 60.0) -> Any:
    """A ``google.genai.Client`` on Vertex AI (imported here: only the functions that call Vertex pay for it).

    Args:
        project: The Google Cloud project.
        location: The Vertex AI region.
        base_url: A loopback stand-in's URL in tests; Google's endpoint when None.
        credentials: Explicit credentials; Application Default Credentials when None.
        timeout: Seconds per request.
    """
    from google import genai
    from google.genai import types

    if credentials is None and base_url:
        # google-genai sends "Authorization: Bearer <token>" from its credentials and would otherwise look
        # up Application Default Credentials; a stand-in checks no signature, so a fixed token will do.
        from google.oauth2.credentials import Credentials

        credentials = Credentials(token="loopback-stand-in")
    # v1 is the GA surface; the SDK would otherwise default to v1beta1.
    http_options = types.HttpOptions(api_version="v1", base_url=base_url or None, timeout=int(timeout * 1000))
    return genai.Client(vertexai=True, project=project, location=location, credentials=credentials,
                        http_options=http_options)
