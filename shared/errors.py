"""The error hierarchy. Each class carries the HTTP status and the JSON error code it maps to.

Retryable errors propagate out of Pub/Sub and Cloud Tasks handlers as 5xx so the platform redelivers;
permanent ones are recorded on the workflow or sample and answered 2xx to those callers, and with
their own status to people.
"""

from __future__ import annotations

from typing import Any


class AppError(Exception):
    status = 500
    code = "internal"

    def __init__(self, message: str, *, code: str | None = None, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.details = details or {}

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body


class PermanentError(AppError):
    """Retrying will not help: bad input, a refused link, a revoked grant."""

    status = 400
    code = "bad_request"


class RetryableError(AppError):
    """A dependency failed in a way that may pass: the caller should try again later."""

    status = 503
    code = "unavailable"


class BadRequest(PermanentError):
    status, code = 400, "bad_request"


class Unauthenticated(PermanentError):
    status, code = 401, "unauthenticated"


class Forbidden(PermanentError):
    status, code = 403, "forbidden"


class NotFound(PermanentError):
    status, code = 404, "not_found"


class Conflict(PermanentError):
    status, code = 409, "conflict"


class TooLarge(PermanentError):
    status, code = 413, "too_large"


class UnsupportedType(PermanentError):
    status, code = 415, "unsupported_type"


class Refused(PermanentError):
    """Well-formed input that the system will not act on (a private address, an unknown rep)."""

    status, code = 422, "refused"


class RateLimited(RetryableError):
    status, code = 429, "rate_limited"


class DependencyDown(RetryableError):
    status, code = 503, "unavailable"
