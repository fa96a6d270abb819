"""One port serves it all: pages, static files (WhiteNoise) and the admin, with DEBUG on and off."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from tests.live import Worker

from .conftest import base_url, demo_env, manage

pytestmark = pytest.mark.slow

STATIC = [
    "/static/demo/site.css",
    "/static/demo/client.js",
    "/static/zocket_django/zocket.js",
    "/static/admin/css/base.css",
]
PAGES = ["/", "/counter/", "/chat/", "/board/", "/accounts/login/", "/admin/login/"]


def get(url: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, dict(response.headers), response.read()


def test_debug_serves_static_files_without_collectstatic(demo):
    for path in PAGES + STATIC:
        status, _, body = get(base_url(demo) + path)
        assert status == 200 and body, path
    _, headers, _ = get(base_url(demo) + "/static/zocket_django/zocket.js")
    assert headers["Content-Type"].startswith("text/javascript")


def test_without_debug_static_files_come_from_collectstatic(tmp_path):
    env = demo_env(tmp_path, DJANGO_DEBUG="0", DJANGO_STATIC_ROOT=str(tmp_path / "static"))
    manage(env, "collectstatic", "--noinput", "-v0")  # what scripts/demo does when DJANGO_DEBUG=0
    assert (tmp_path / "static" / "zocket_django" / "zocket.js.gz").exists()
    worker = Worker(env, tmp_path, "daphne").start()
    try:
        for path in PAGES + STATIC:
            status, _, body = get(base_url(worker) + path)
            assert status == 200 and body, path
        _, headers, _ = get(base_url(worker) + "/static/zocket_django/zocket.js", **{"Accept-Encoding": "gzip"})
        assert headers.get("Content-Encoding") == "gzip"
        with pytest.raises(urllib.error.HTTPError) as missing:
            get(base_url(worker) + "/static/demo/missing.css")
        assert missing.value.code == 404
    finally:
        worker.stop()
