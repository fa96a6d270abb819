"""Exceptions a handler may raise to answer the caller with its own message."""

from __future__ import annotations

from typing import Any

from .protocol import Code


class ZocketError(Exception):
    """Raise from a handler to refuse a call with a message the client may see.

    Any other exception answers ``handler_error`` with a generic message (the
    traceback goes to the ``zocket_django`` logger). Either way the call changes
    nothing: state is rolled back and no event is sent.
    """

    def __init__(self, message: str, *, code: str = Code.HANDLER_ERROR, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.details = details


class Unauthenticated(ZocketError):
    """Refuse a request because nobody (or nobody valid) is logged in: ``unauthenticated``."""

    def __init__(self, message: str = "login required", *, details: Any = None) -> None:
        super().__init__(message, code=Code.UNAUTHENTICATED, details=details)


class Forbidden(ZocketError):
    """Refuse a request the caller is not allowed to make: ``forbidden``."""

    def __init__(self, message: str = "not allowed", *, details: Any = None) -> None:
        super().__init__(message, code=Code.FORBIDDEN, details=details)


class AuthenticationFailed(Exception):
    """Raised by an authenticator: credentials were given but are not valid.

    The socket is accepted, sent an ``error`` frame with code
    ``unauthenticated`` and this message, and closed with code 4401.
    """

    def __init__(self, message: str = "invalid credentials") -> None:
        super().__init__(message)
        self.message = message
