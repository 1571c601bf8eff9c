"""Cloud Task `embed`: chunk, embed, store, rebuild the voice profile (shared.voice.pipeline)."""

import functions_framework

from shared.voice.pipeline import embed_router


@functions_framework.http
def embed(request):
    return embed_router.dispatch(request)
