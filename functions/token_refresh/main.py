"""Entry point of the `token-refresh` function: Google connect flow and the scheduled refresh run."""

import functions_framework

from shared.accounts_google.api import router


@functions_framework.http
def token_refresh(request):
    return router.dispatch(request)
