"""The errors staff can get from the broadcasts service; each carries its HTTP status for the admin pages."""

from __future__ import annotations

from app.kit.errors import AppError, Conflict, NotFound


class BroadcastInvalid(AppError):
    """The broadcast is not valid."""

    code = "broadcast_invalid"


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
