"""Cloud Task `draft`: HubSpot lead → the rep's exemplars → subject and body → `draft-created` (shared.drafting.step).

Answers 2xx when the draft is stored, or the lead is blocked or failed for good (recorded on the
workflow); 401/403 for a caller without the tasks service account's token; 503 for a retryable failure,
so Cloud Tasks retries with backoff.
"""

import functions_framework

from shared.drafting.step import draft_router


@functions_framework.http
def draft(request):
    return draft_router.dispatch(request)
