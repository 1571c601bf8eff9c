"""Cloud Task `extract`: a queued sample's bytes or link → clean, scrubbed text (shared.voice.pipeline)."""

import functions_framework

from shared.voice.pipeline import extract_router


@functions_framework.http
def extract(request):
    return extract_router.dispatch(request)
