"""The voice-training API (DESIGN §4): routes are declared in shared.voice.ingest."""

import functions_framework

from shared.voice.ingest import router


@functions_framework.http
def ingest(request):
    return router.dispatch(request)
