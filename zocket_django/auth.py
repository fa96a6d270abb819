"""Who is calling: the Django user of a WebSocket, from its session or a token.

Browsers bring the session cookie; ``AuthMiddlewareStack`` (see ``routing``)
turns it into ``scope["user"]``. Other clients bring a bearer token made by
``issue_token`` (or ``manage.py zocket_token <username>``), read by the
authenticator named in ``ZOCKET["AUTHENTICATOR"]`` (this module's
``token_authenticator`` by default) from, in this order:

- the ``Authorization: Bearer <token>`` header (scripts, apps);
- a ``Sec-WebSocket-Protocol`` entry ``zocket.token.<token>`` (browsers,
  which cannot set headers: ``new WebSocket(url, ["zocket", "zocket.token." + token])``);
  the socket is then accepted with the subprotocol ``zocket`` when offered,
  else with the token entry itself, as browsers require one of theirs back;
- the query string ``?token=<token>`` (last resort: URLs end up in logs).

A token that is given but invalid, forged or expired refuses the connection:
the socket is accepted, sent one ``error`` frame (code ``unauthenticated``)
and closed with code 4401, so that a client can tell "log in again" from a
network failure. Without a token the session decides, and no session is
simply anonymous.

Tokens are ``django.core.signing`` signatures (``TimestampSigner`` with the
``ZOCKET["TOKEN_SALT"]`` salt and the ``SECRET_KEY``) of the user's primary
key, an expiry, and a digest of the user's session hash: changing the
password revokes every token of that user, as it ends their sessions.

``identity`` checks open sockets again with ``authenticated_user``: the same
authenticator, and the session read afresh (``session_user``).
"""

from __future__ import annotations

import importlib
import inspect
import time
from collections.abc import Awaitable, Callable
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qs

from channels.auth import get_user
from django.core import signing
from django.core.exceptions import ValidationError
from django.utils.crypto import constant_time_compare, salted_hmac
from django.utils.module_loading import import_string

from .conf import zocket_settings
from .db import to_thread
from .errors import AuthenticationFailed

#: The subprotocol of zocket itself, and the prefix of a token subprotocol entry.
SUBPROTOCOL = "zocket"
TOKEN_SUBPROTOCOL_PREFIX = "zocket.token."

#: Separator of token parts: unlike ``:``, allowed in a ``Sec-WebSocket-Protocol`` token.
_SEP = "."


class SessionAuthMiddleware:
    """A WebSocket's ``scope["cookies"]``, ``["session"]`` and ``["user"]``, as Channels' ``AuthMiddlewareStack``.

    Two differences, both about load. Channels loads every socket's user on
    the thread Django's sync views share, even for a socket without a
    session cookie, so a burst of handshakes queues there one by one, past
    daphne's connect timeout; here a socket without a session is anonymous at
    once, and a session is read in the thread pool, in parallel. And Channels
    wraps ``send`` to save the session on HTTP responses, which a WebSocket
    never sends, at a cost on every outgoing frame; here ``send`` is left
    alone.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        from django.conf import settings
        from django.contrib.auth.models import AnonymousUser
        from django.http.cookie import parse_cookie

        cookies: dict[str, str] = {}
        for name, value in scope.get("headers", ()):
            if name == b"cookie":
                cookies = parse_cookie(value.decode("latin1"))
                break
        scope = dict(scope, cookies=cookies)
        if "session" not in scope:
            scope["session"] = _session_store()(cookies.get(settings.SESSION_COOKIE_NAME))
        if "user" not in scope:
            has_session = scope["session"].session_key is not None
            scope["user"] = await _session_user(scope) if has_session else AnonymousUser()
        return await self.inner(scope, receive, send)


@lru_cache(maxsize=1)
def _session_store() -> Any:
    from django.conf import settings

    return importlib.import_module(settings.SESSION_ENGINE).SessionStore


_session_user = to_thread(get_user.func, thread_sensitive=False)


def user_claims(user: Any) -> dict[str, Any]:
    """The default claims of an authenticated user (runs in a thread: it may query)."""
    return {
        "username": user.get_username(),
        "is_staff": bool(getattr(user, "is_staff", False)),
        "is_superuser": bool(getattr(user, "is_superuser", False)),
        "groups": sorted(user.groups.values_list("name", flat=True)) if hasattr(user, "groups") else [],
    }


async def identify(scope: dict[str, Any]) -> tuple[Any, str | None, dict[str, Any]]:
    """``(user, user_id, claims)`` for a connection; anonymous is ``(user, None, {})``.

    The authenticator answers first; when it finds no credentials the session
    user of ``AuthMiddlewareStack`` stands. Raises ``AuthenticationFailed``
    when credentials were given but are not valid.
    """
    authenticate = _authenticator(zocket_settings().AUTHENTICATOR)
    user = await authenticate(scope) if authenticate is not None else None
    if user is None:
        user = scope.get("user")
    else:
        scope["user"] = user
    if user is None or not getattr(user, "is_authenticated", False):
        return user, None, {}
    return user, str(user.pk), await claims_of(user)


async def authenticated_user(scope: dict[str, Any], session_key: str | None) -> Any:
    """The user a connection's credentials give *now* (for ``identity``'s checks), ``None`` for none.

    The authenticator runs again (it raises ``AuthenticationFailed`` for a
    token that expired or was revoked); without a token, the session
    ``session_key`` is read afresh.
    """
    authenticate = _authenticator(zocket_settings().AUTHENTICATOR)
    user = await authenticate(scope) if authenticate is not None else None
    if user is None and session_key is not None:
        user = await to_thread(session_user, thread_sensitive=False)(session_key)
    return user


def session_user(session_key: str) -> Any:
    """The user a session still holds, verified as Django verifies it per request; ``None`` otherwise.

    Unlike ``django.contrib.auth.get_user`` it changes nothing (no flush, no
    new key): a check must not end a session a browser still uses.
    """
    from importlib import import_module

    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model, load_backend

    session = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    try:
        user_id = get_user_model()._meta.pk.to_python(session[SESSION_KEY])
        backend_path = session[BACKEND_SESSION_KEY]
    except (KeyError, ValidationError):
        return None
    if backend_path not in settings.AUTHENTICATION_BACKENDS:
        return None
    user = load_backend(backend_path).get_user(user_id)
    if user is None or not hasattr(user, "get_session_auth_hash"):
        return user
    given = session.get(HASH_SESSION_KEY) or ""
    fallbacks = getattr(user, "get_session_auth_fallback_hash", lambda: ())()
    if given and any(constant_time_compare(given, h) for h in (user.get_session_auth_hash(), *fallbacks)):
        return user
    return None


async def claims_of(user: Any) -> dict[str, Any]:
    """``ZOCKET["CLAIMS"]`` of an authenticated user (in a thread: it may query)."""
    return await _claims(zocket_settings().CLAIMS)(user)


@lru_cache(maxsize=8)
def _authenticator(path: str | None) -> Callable[[dict[str, Any]], Awaitable[Any]] | None:
    if not path:
        return None
    fn = import_string(path)
    if inspect.iscoroutinefunction(fn):
        return fn
    return to_thread(fn, thread_sensitive=False)  # not behind Django's one thread: handshakes run in parallel


@lru_cache(maxsize=8)
def _claims(path: str) -> Callable[[Any], Awaitable[dict[str, Any]]]:
    return to_thread(import_string(path), thread_sensitive=False)


# -- tokens ----------------------------------------------------------------------


def _signer() -> signing.TimestampSigner:
    return signing.TimestampSigner(salt=zocket_settings().TOKEN_SALT, sep=_SEP)


def _session_digest(user: Any) -> str:
    session_hash = user.get_session_auth_hash() if hasattr(user, "get_session_auth_hash") else ""
    return salted_hmac(zocket_settings().TOKEN_SALT, session_hash, algorithm="sha256").hexdigest()[:20]


def issue_token(user: Any, max_age: int | None = None) -> str:
    """A bearer token for ``user``, valid ``max_age`` seconds (at most ``ZOCKET["TOKEN_MAX_AGE"]``).

    The token is signed, not encrypted: it carries the user's primary key in
    the clear. Only characters ``A-Z a-z 0-9 - _ .`` are used, so it fits a
    header, a query string and a ``Sec-WebSocket-Protocol`` entry as it is.
    """
    ceiling = zocket_settings().TOKEN_MAX_AGE
    lifetime = ceiling if max_age is None else max_age
    if not 0 < lifetime <= ceiling:
        raise ValueError(f"max_age must be between 1 and TOKEN_MAX_AGE ({ceiling}) seconds, not {max_age}")
    payload = {"u": str(user.pk), "e": int(time.time() + lifetime), "h": _session_digest(user)}
    return _signer().sign_object(payload, compress=False)


def user_for_token(token: str) -> Any:
    """The active user a token was issued to; ``AuthenticationFailed`` otherwise (runs in a thread)."""
    from django.contrib.auth import get_user_model

    try:
        payload = _signer().unsign_object(token, max_age=zocket_settings().TOKEN_MAX_AGE)
    except signing.SignatureExpired:
        raise AuthenticationFailed("token expired") from None
    except (signing.BadSignature, ValueError, UnicodeError):
        raise AuthenticationFailed("invalid token") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("e"), int) or payload["e"] < time.time():
        raise AuthenticationFailed("token expired")
    model = get_user_model()
    try:
        user = model._default_manager.get(pk=payload.get("u"))
    except (model.DoesNotExist, ValueError, TypeError):
        raise AuthenticationFailed("invalid token") from None
    if not getattr(user, "is_active", True):
        raise AuthenticationFailed("invalid token")
    if not constant_time_compare(str(payload.get("h", "")), _session_digest(user)):
        raise AuthenticationFailed("token revoked")
    return user


def token_from_scope(scope: dict[str, Any]) -> str | None:
    """The bearer token a client sent (header, subprotocol or query string), or ``None``."""
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, credentials = value.decode("latin1").partition(" ")
            if scheme.lower() == "bearer" and credentials.strip():
                return credentials.strip()
    for protocol in scope.get("subprotocols", ()):
        if protocol.startswith(TOKEN_SUBPROTOCOL_PREFIX):
            return protocol[len(TOKEN_SUBPROTOCOL_PREFIX) :]
    query = scope.get("query_string", b"")
    if query and b"token=" in query:
        tokens = parse_qs(query.decode("latin1")).get("token")
        if tokens:
            return tokens[0]
    return None


def accepted_subprotocol(scope: dict[str, Any]) -> str | None:
    """The subprotocol to accept the socket with, among those the client offered."""
    offered = scope.get("subprotocols") or ()
    if SUBPROTOCOL in offered:
        return SUBPROTOCOL
    for protocol in offered:
        if protocol.startswith(TOKEN_SUBPROTOCOL_PREFIX):
            return protocol
    return None


async def token_authenticator(scope: dict[str, Any]) -> Any:
    """The default authenticator: the user of a bearer token, ``None`` without one.

    Costs nothing on connections without a token (no thread hop).
    """
    token = token_from_scope(scope)
    if token is None:
        return None
    return await to_thread(user_for_token, thread_sensitive=False)(token)
