"""Entry point of the `webhook` function: HubSpot deliveries and Gmail push."""

import functions_framework

from shared.leads.webhook_api import router


@functions_framework.http
def webhook(request):
    return router.dispatch(request)
