"""``manage.py zocket_token <username>``: print a bearer token for a non-browser client."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from zocket_django.auth import issue_token
from zocket_django.conf import zocket_settings


class Command(BaseCommand):
    help = (
        "Print a signed bearer token for a user, for clients that cannot use the session cookie. "
        "Send it as 'Authorization: Bearer <token>', as the subprotocol 'zocket.token.<token>' "
        "or as '?token=<token>'."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username", help="the user's username (USERNAME_FIELD)")
        parser.add_argument(
            "--max-age",
            type=int,
            default=None,
            help="seconds the token stays valid (default and maximum: ZOCKET['TOKEN_MAX_AGE'])",
        )

    def handle(self, *args: Any, username: str, max_age: int | None, **options: Any) -> None:
        model = get_user_model()
        try:
            user = model._default_manager.get_by_natural_key(username)
        except model.DoesNotExist:
            raise CommandError(f"no user {username!r}") from None
        if not getattr(user, "is_active", True):
            raise CommandError(f"user {username!r} is inactive")
        try:
            token = issue_token(user, max_age=max_age)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(token)
        lifetime = max_age or zocket_settings().TOKEN_MAX_AGE
        self.stderr.write(f"valid for {lifetime} seconds; changing the user's password revokes it")
