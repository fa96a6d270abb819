"""What the client raises: one base class, and the server's refusals with their codes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from websockets.frames import Close


class ZocketError(Exception):
    """Base class of everything this client raises."""


class ZocketConnectionError(ZocketError, ConnectionError):
    """The client could not connect, gave up reconnecting, or was closed."""


class ZocketTimeoutError(ZocketError, TimeoutError):
    """A client-side wait ran out of time."""


class ZocketRpcError(ZocketError):
    """The server refused a request (an ``rpc:result`` with ``error`` or an ``error`` frame).

    ``code`` is the protocol's error code (``invalid_input``, ``forbidden``...),
    ``details`` its structured extra (e.g. validation errors), ``ref`` the
    offending message reference of an ``error`` frame.
    """

    def __init__(
        self,
        code: str,
        message: str,
        details: Any = None,
        *,
        method: str | None = None,
        ref: Any = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details
        self.method = method
        self.ref = ref

    def __str__(self) -> str:
        return f"[{self.code}] {self.message}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r})"


class ZocketRpcTimeout(ZocketRpcError, ZocketTimeoutError):
    """No answer within the call's timeout (code ``timeout``); the call may still run."""


class ZocketRpcDisconnected(ZocketRpcError, ZocketConnectionError):
    """The socket dropped or the client closed before the answer (code ``disconnected``).

    A lost call is sent again with its key until the client's timeout (the
    server runs a key at most once), so this reaches the caller only once the
    client is closed or will not reconnect.
    """


class ZocketRefused(ZocketRpcError, ZocketConnectionError):
    """The server refused the connection for good: close code 4401 or 4403.

    4401 (code ``unauthenticated``) is the server's answer to credentials that
    are given but not valid: a forged, expired or revoked token. 4403 (code
    ``forbidden``) is for applications that refuse a connection they
    identified. Retrying with the same credentials cannot help, so the client
    does not reconnect: it closes (status ``disconnected``, ``close_reason``
    says why), and ``connect()``, pending calls and later calls raise this.
    ``close_code`` is the WebSocket close code.
    """

    def __init__(self, code: str, message: str, *, close_code: int, method: str | None = None) -> None:
        super().__init__(code, message, method=method)
        self.close_code = close_code

    def copy(self, method: str | None = None) -> ZocketRefused:
        """A fresh error to raise in one more place (an exception keeps the traceback of its raise)."""
        return ZocketRefused(self.code, self.message, close_code=self.close_code, method=method)


#: Close codes after which reconnecting cannot help, and the error code each stands for.
FINAL_CLOSE_CODES: Final = {4401: "unauthenticated", 4403: "forbidden"}


def refusal_from_close(close: Close | None, error: str | None) -> ZocketRefused | None:
    """The refusal a received close frame means (``error``: the ``error`` frame before it), if any."""
    if close is None or close.code not in FINAL_CLOSE_CODES:
        return None
    reason = error or close.reason or FINAL_CLOSE_CODES[close.code]
    return ZocketRefused(
        FINAL_CLOSE_CODES[close.code],
        f"the server refused the connection (close code {close.code}): {reason}",
        close_code=close.code,
    )
