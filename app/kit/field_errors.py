"""An input error that names its field, so a form shows it next to that field and the API says which one."""

from __future__ import annotations

from app.kit.errors import ValidationFailed


class FieldInvalid(ValidationFailed):
    """The value of one field is not acceptable."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message, code=f"invalid_{field}")
        self.field = field
