"""The errors staff can get from the broadcasts service; each carries its HTTP status for the admin pages."""

from __future__ import annotations

from app.kit.errors import AppError, Conflict, NotFound


class BroadcastInvalid(AppError):
    """The broadcast is not valid. `field` names the input at fault (the admin shows the message beside it):
    title, bodies.<lang>, segment, plan_id, language, button.url, button.text, scheduled_at."""

    status_code = 422
    code = "broadcast_invalid"

    def __init__(self, message: str = "", *, field: str | None = None, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.field = field


class BroadcastNotFound(NotFound):
    """No such broadcast."""

    code = "broadcast_not_found"


class TransitionRefused(Conflict):
    """The broadcast is not in a state that allows this."""

    code = "broadcast_transition_refused"


class TestSendFailed(AppError):
    """Telegram did not take the test message."""

    status_code = 502
    code = "broadcast_test_send_failed"
    __test__ = False  # not a pytest test class, despite the name
