"""Domain errors carry their HTTP status and a stable code; one handler renders them as JSON or a page fragment."""

from __future__ import annotations


class AppError(Exception):
    """Base of every error a user or client may see. `code` is stable; `message` is human-readable."""

    status_code: int = 400
    code: str = "bad_request"

    def __init__(self, message: str = "", *, code: str | None = None, status_code: int | None = None) -> None:
        super().__init__(message or self.__class__.__doc__ or self.code)
        self.message = message or (self.__class__.__doc__ or self.code).strip()
        if code:
            self.code = code
        if status_code:
            self.status_code = status_code


class ValidationFailed(AppError):
    """The input is not valid."""

    status_code = 422
    code = "validation_failed"


class NotAuthenticated(AppError):
    """Sign-in required."""

    status_code = 401
    code = "not_authenticated"


class Forbidden(AppError):
    """You are not allowed to do this."""

    status_code = 403
    code = "forbidden"


class NotFound(AppError):
    """Not found."""

    status_code = 404
    code = "not_found"


class Conflict(AppError):
    """The request conflicts with the current state."""

    status_code = 409
    code = "conflict"


class RateLimited(AppError):
    """Too many requests; try again later."""

    status_code = 429
    code = "rate_limited"

    def __init__(self, message: str = "", *, retry_after: int = 60) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ExternalServiceError(Exception):
    """An external system (panel, payment provider, Telegram) stayed unreachable or kept failing."""

    def __init__(self, service: str, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(f"{service}: {message}")
        self.service = service
        self.retry_after = retry_after


class ServiceUnavailable(AppError):
    """A dependency is unavailable right now; the request can be retried."""

    status_code = 503
    code = "service_unavailable"


class ShellRequired(Exception):
    """A first page load without credentials: inside Telegram only JavaScript can attach initData, so the
    server answers with a shell that fetches the same page again with the header (or, in a plain browser,
    sends the visitor to sign in)."""
