"""Identity kept true while a socket is open: credentials and read permissions checked again.

A socket's user is decided at connect (``auth.identify``). Afterwards, every
authenticated connection of this process is checked again:

- every ``IDENTITY_CHECK_INTERVAL`` seconds (30 by default), and
- at once, on Django's signals in this process: ``user_logged_out`` (the
  sockets of that session), a save or delete of the user (a password change
  moves the session hash, which revokes sessions and tokens alike;
  ``is_active=False``) and changes of user or group permissions.

A check runs the authenticator again (a token: expired, revoked, user gone or
inactive) and otherwise reads the session afresh, verified as Django verifies
it on each request, without changing it. When the identity no longer holds,
the socket gets an ``error`` frame (``unauthenticated``) and is closed with
4401, as a refused connect is. When it holds, the connection takes the fresh
user object and claims, forgets its cached permission answers, and every open
subscription whose ``read`` rule needs a login or permissions is checked
again: one that is refused now ends, with an ``error`` frame (``forbidden``,
``ref`` naming the subscription). Custom checks and middleware are not run
again (they may have side effects); they ran when the subscription was made.

A check that cannot be made (the database is down) keeps the connection as it
is and is logged; the next interval tries again. Signals only reach the sockets
of the process that sent them; the other workers notice within the interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from .access import gate
from .auth import authenticated_user, claims_of
from .conf import zocket_settings
from .errors import AuthenticationFailed, ZocketError
from .registry import registry

if TYPE_CHECKING:
    from .actor import ActorSpec
    from .caller import Caller

log = logging.getLogger(__name__)

#: Connections checked at once (each check is a thread hop or a few).
BATCH = 16
#: Why a session socket is closed when its session no longer holds its user.
SESSION_ENDED = "session ended"


class Watched(Protocol):
    """What the watch needs of a connection (``consumer.ZocketConsumer``)."""

    client_id: str
    scope: dict[str, Any]
    caller: Caller
    perm_cache: dict[str, bool]
    subscriptions: set[tuple[str, str, str]]

    async def revoke(self, reason: str) -> None: ...

    async def end_subscription(self, spec: ActorSpec, actor_id: str, kind: str, refusal: ZocketError) -> None: ...


@dataclasses.dataclass(slots=True)
class _Entry:
    session_key: str | None
    due: float


class IdentityWatch:
    """The authenticated connections of one event loop, and the task that checks them."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.entries: dict[Watched, _Entry] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def add(self, conn: Watched) -> None:
        interval = zocket_settings().IDENTITY_CHECK_INTERVAL
        self.entries[conn] = _Entry(session_key(conn.scope), time.monotonic() + interval)
        if self._task is None or self._task.done():
            self._task = self.loop.create_task(self._run())

    def discard(self, conn: Watched) -> None:
        self.entries.pop(conn, None)
        if not self.entries:
            self._wake.set()  # the task ends: nothing left to check

    def check_soon(self, which: Callable[[Watched, _Entry], bool]) -> None:
        """Check the connections ``which`` selects now, not at their interval."""
        for conn, entry in self.entries.items():
            if which(conn, entry):
                entry.due = 0.0
        self._wake.set()

    def end_session(self, key: str) -> None:
        """The session ``key`` logged out: its sockets are revoked, no check needed."""
        for conn, entry in list(self.entries.items()):
            if entry.session_key == key:
                self.discard(conn)
                self.loop.create_task(_revoke(conn, "logged out"))

    async def _run(self) -> None:
        while self.entries:
            self._wake.clear()  # a signal during the round wakes the next one at once
            interval = zocket_settings().IDENTITY_CHECK_INTERVAL
            try:
                await self._round(interval)
            except Exception:
                log.exception("zocket: the identity checks failed; trying again")
            soonest = min((e.due for e in self.entries.values()), default=time.monotonic() + interval)
            # Never busier than ten rounds per interval, however the connections' times spread.
            pause = max(soonest - time.monotonic(), min(interval / 10, 1.0))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), pause)

    async def _round(self, interval: float) -> None:
        """Check every connection that is due."""
        now = time.monotonic()
        due = [conn for conn, entry in self.entries.items() if entry.due <= now]
        for conn in due:
            self.entries[conn].due = now + interval  # a signal during the check marks it again
        failures: list[BaseException] = []
        for start in range(0, len(due), BATCH):
            batch = [conn for conn in due[start : start + BATCH] if conn in self.entries]
            failures += [e for e in await asyncio.gather(*(self._check(conn) for conn in batch)) if e]
        if failures:  # one line per round, however many sockets the database outage concerns
            log.warning(
                "zocket: could not check the identity of %d socket(s) again; they stay as they were "
                "until the next check",
                len(failures),
                exc_info=failures[-1],
            )

    async def _check(self, conn: Watched) -> Exception | None:
        """Check one connection; the exception when the check could not be made."""
        try:
            await recheck(conn, self.entries[conn].session_key)
        except Revoked as exc:
            self.discard(conn)
            await _revoke(conn, exc.reason)
        except Exception as exc:
            return exc
        return None


async def _revoke(conn: Watched, reason: str) -> None:
    try:
        await conn.revoke(reason)
    except Exception:  # the socket went away meanwhile
        log.warning("zocket: could not close %s (%s)", conn.client_id, reason, exc_info=True)


class Revoked(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


async def recheck(conn: Watched, session: str | None) -> None:
    """Check ``conn``'s identity and guarded subscriptions again; raise ``Revoked`` if it no longer holds."""
    caller = conn.caller
    try:
        user = await authenticated_user(conn.scope, session)
    except AuthenticationFailed as exc:
        raise Revoked(exc.message) from None
    if user is None or not getattr(user, "is_authenticated", False) or str(user.pk) != caller.user_id:
        raise Revoked(SESSION_ENDED)
    conn.caller = dataclasses.replace(caller, user=user, claims=await claims_of(user))
    conn.scope["user"] = user
    conn.perm_cache = {}  # and a fresh user object: Django's backends cache permissions on it
    for actor, actor_id, kind in sorted(conn.subscriptions):
        spec = registry.get(actor)
        guard = spec.read_guard if spec is not None else None
        if spec is None or guard is None or not guard.login_required:
            continue
        try:
            await gate(guard, user, conn.perm_cache)
        except ZocketError as refusal:
            await conn.end_subscription(spec, actor_id, kind, refusal)


def session_key(scope: dict[str, Any]) -> str | None:
    """The key of the session a connection was opened with, if any."""
    session = scope.get("session")
    return getattr(session, "session_key", None) if session is not None else None


# -- one watch per event loop, reached from signals in any thread ----------------------------

_watches: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, IdentityWatch] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def watch(conn: Watched) -> None:
    """Keep checking ``conn`` (an authenticated connection) until ``unwatch``."""
    loop = asyncio.get_running_loop()
    with _lock:
        found = _watches.get(loop)
        if found is None:
            found = _watches[loop] = IdentityWatch(loop)
    found.add(conn)


def unwatch(conn: Watched) -> None:
    found = _watches.get(asyncio.get_running_loop())
    if found is not None:
        found.discard(conn)


def _everywhere(action: Callable[[IdentityWatch], None]) -> None:
    """Run ``action`` on every loop's watch, in that loop's thread."""
    with _lock:
        watches = list(_watches.values())
    for found in watches:
        if found.loop.is_closed():
            continue
        with contextlib.suppress(RuntimeError):  # closed meanwhile
            found.loop.call_soon_threadsafe(action, found)


def check_user_soon(user_id: str) -> None:
    """Check the sockets of one user now (their password, activity or permissions changed)."""
    _everywhere(lambda w: w.check_soon(lambda conn, _: conn.caller.user_id == user_id))


def check_everyone_soon() -> None:
    """Check every authenticated socket now (a group's permissions changed)."""
    _everywhere(lambda w: w.check_soon(lambda conn, _: True))


def end_session(key: str) -> None:
    _everywhere(lambda w: w.end_session(key))


# -- Django's signals -----------------------------------------------------------------------


def connect_signals() -> None:
    """Listen to logouts, user saves and deletes, and permission changes (``AppConfig.ready``)."""
    from django.apps import apps

    if not apps.is_installed("django.contrib.auth"):
        return
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.contrib.auth.signals import user_logged_out
    from django.db.models.signals import m2m_changed, post_delete, post_save

    user_model = get_user_model()
    user_logged_out.connect(_logged_out, dispatch_uid="zocket_django.identity")
    post_save.connect(_user_changed, sender=user_model, dispatch_uid="zocket_django.identity")
    post_delete.connect(_user_changed, sender=user_model, dispatch_uid="zocket_django.identity")
    tables = [getattr(user_model, name, None) for name in ("user_permissions", "groups")] + [Group.permissions]
    for table in tables:
        through = getattr(table, "through", None)
        if through is not None:
            m2m_changed.connect(_permissions_changed, sender=through, dispatch_uid="zocket_django.identity")


def _logged_out(sender: Any, request: Any = None, **kwargs: Any) -> None:
    key = getattr(getattr(request, "session", None), "session_key", None)
    if key:
        end_session(key)


def _user_changed(sender: Any, instance: Any, using: str = "default", **kwargs: Any) -> None:
    from django.db import transaction

    user_id = str(instance.pk)
    transaction.on_commit(lambda: check_user_soon(user_id), using=using)  # the check must see the change


def _permissions_changed(
    sender: Any, instance: Any, action: str, model: Any, pk_set: Any, using: str = "default", **kwargs: Any
) -> None:
    from django.contrib.auth import get_user_model
    from django.db import transaction

    if not action.startswith("post_"):
        return
    user_model = get_user_model()
    if isinstance(instance, user_model):
        users = [str(instance.pk)]
    elif model is user_model and pk_set:
        users = [str(pk) for pk in pk_set]
    else:  # a group's permissions: whoever is in it
        transaction.on_commit(check_everyone_soon, using=using)
        return

    def check_them() -> None:
        for user_id in users:
            check_user_soon(user_id)

    transaction.on_commit(check_them, using=using)
