"""Helpers for admin tests against real daphne workers: a staff user, an HTTP session."""

from __future__ import annotations

import http.cookiejar
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from tests.live import manage

PASSWORD = "admin-test-password"


def create_staff(env: dict[str, str], username: str, perms: tuple[str, ...] = ("view_hotactor", "change_hotactor")):
    """A staff user with zocket_django permissions, in the workers' database (``manage.py shell -c``)."""
    code = (
        "from django.contrib.auth.models import Permission, User\n"
        f"u = User.objects.create_user({username!r}, password={PASSWORD!r}, is_staff=True)\n"
        f"u.user_permissions.set(Permission.objects.filter(content_type__app_label='zocket_django', "
        f"codename__in={list(perms)!r}))\n"
    )
    manage(env, "shell", "-c", code)


class AdminSession:
    """A logged-in browser-less session on one worker's HTTP side (blocking: use from a thread)."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.cookies = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.cookies))

    def _open(self, path: str, data: dict[str, Any] | None = None) -> tuple[int, str, str]:
        body = urllib.parse.urlencode(data, doseq=True).encode() if data is not None else None
        request = urllib.request.Request(self.base + path, data=body)
        try:
            with self.opener.open(request, timeout=30) as response:
                return response.status, response.geturl(), response.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.geturl(), err.read().decode(errors="replace")

    def csrf(self) -> str:
        return next(c.value for c in self.cookies if c.name == "csrftoken")

    def login(self, username: str, password: str = PASSWORD) -> AdminSession:
        status, _, page = self._open("/admin/login/")
        assert status == 200, page[:500]
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
        status, url, page = self._open(
            "/admin/login/?next=/admin/",
            {"csrfmiddlewaretoken": token, "username": username, "password": password, "next": "/admin/"},
        )
        assert status == 200 and url.endswith("/admin/"), f"login failed: {status} {url}"
        return self

    def get(self, path: str) -> tuple[int, str]:
        status, _, page = self._open(path)
        return status, page

    def get_json(self, path: str) -> Any:
        status, page = self.get(path)
        assert status == 200, page[:500]
        return json.loads(page)

    def post(self, path: str, data: dict[str, Any]) -> tuple[int, str, str]:
        """Follows the redirect: (status, final url, page)."""
        return self._open(path, {**data, "csrfmiddlewaretoken": self.csrf()})
