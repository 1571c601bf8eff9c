"""Entry point of the `admin` function: the ops dashboard API (routes in shared.admin.api)."""

import functions_framework

from shared.admin.api import router


@functions_framework.http
def admin(request):
    return router.dispatch(request)
