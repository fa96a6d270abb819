"""The Django admin's view of the hot actors on every worker.

``HotActorAdmin`` is registered for the table-less ``HotActor`` model (see
``models.py``), which gives it the "Hot actors" entry under "Zocket" and
its permissions: ``view_hotactor`` to look, ``change_hotactor`` to deactivate
or destroy. It replaces the model admin's pages with its own:

- the list of every hot instance on every worker (sort, filter by actor name
  and worker, search ids, totals per actor name), with bulk actions;
- a page per instance with its live state (``live.json``, polled every
  second), its clients and its recent steps;
- confirmation pages for deactivating and destroying.

The instances live in the daphne processes, so these views need the process's
node. Admin views are sync views: Django's ASGI handler runs them in a thread
while the server's event loop (the one the node and the WebSockets run on)
goes on. Each view hands its work to that loop and waits, bounded, for the
answer; the work runs in a fresh context, as if the node itself had started
it. Served without ASGI (WSGI, ``manage.py shell``) there is no node to ask,
and the pages say so.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.contrib.admin.utils import quote, unquote
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.http import urlencode

from .conf import zocket_settings
from .ops import ACTIONS, OPS_TIMEOUT, Failed, Silent, WorkerReport, worker_label
from .sync_bridge import NodeUnavailable, on_node

if TYPE_CHECKING:
    from .ops import Operations


#: The list's columns: (key, header). Every one sorts.
COLUMNS = [
    ("actor", "Actor"),
    ("actor_id", "Id"),
    ("worker", "Worker"),
    ("clients", "Clients"),
    ("queued", "Queued"),
    ("version", "Version"),
    ("activated_at", "Activated"),
    ("last_activity", "Last active"),
    ("persist", "Persists"),
]
SORT_KEYS = {key for key, _ in COLUMNS}
DEFAULT_ORDER = "actor"

ACTION_TEXT = {
    "deactivate": {
        "title": "Deactivate",
        "verb": "deactivated",
        "explain": "Its queued steps run first, then on_deactivate; an actor that persists its state saves it. "
        "Connected clients stay connected: their next call activates it again.",
    },
    "destroy": {
        "title": "Destroy",
        "verb": "destroyed",
        "explain": "Like deactivating, and whatever was saved of it is forgotten too. "
        "Connected clients stay connected: their next call starts it afresh.",
    },
}


def hot_actor_url(actor: str, actor_id: str, site: admin.AdminSite = admin.site) -> str:
    """The admin page of one instance (for links, e.g. from a saved snapshot to its live instance)."""
    return reverse(f"{site.name}:zocket_django_hotactor_detail", args=(quote(actor), quote(actor_id)))


def hot_instances(timeout: float = OPS_TIMEOUT) -> set[tuple[str, str]] | None:
    """``(actor, id)`` of every instance hot on a worker that answered; ``None`` when there is no node to ask.

    For admin pages that want to link to live instances (one inventory per page, not per row).
    """
    try:
        reports = _reports(timeout)
    except (NodeUnavailable, Silent):
        return None
    return {(i["actor"], i["actor_id"]) for r in reports for i in r.instances}


def _reports(timeout: float) -> list[WorkerReport]:
    """Every worker's report, asked through this request's node (``NodeUnavailable``, ``Silent``)."""
    return on_node(lambda ops: ops.inventory(timeout), timeout + 2)


def ago(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 1:
        return "just now"
    if seconds < 120:
        return f"{int(seconds)} s ago"
    if seconds < 7200:
        return f"{int(seconds // 60)} min ago"
    return f"{int(seconds // 3600)} h ago"


def when(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, tz=UTC)


def key_of(actor: str, actor_id: str) -> str:
    """One checkbox value for an instance: both parts quoted, so '/' separates them."""
    return f"{quote(actor)}/{quote(actor_id)}"


def parse_key(value: str) -> tuple[str, str] | None:
    actor, sep, actor_id = value.partition("/")
    return (unquote(actor), unquote(actor_id)) if sep else None


class HotActorAdmin(admin.ModelAdmin):
    """The pages of the hot actors (no database table behind them)."""

    ops_timeout = OPS_TIMEOUT
    list_template = "admin/zocket_django/hotactor/hot_actors.html"
    detail_template = "admin/zocket_django/hotactor/hot_actor.html"
    confirm_template = "admin/zocket_django/hotactor/confirm.html"

    # -- permissions -------------------------------------------------------------

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def _require(self, request: HttpRequest, change: bool = False) -> None:
        allowed = self.has_change_permission(request) if change else self.has_view_permission(request)
        if not allowed:
            raise PermissionDenied

    # -- urls ------------------------------------------------------------------------

    def get_urls(self) -> list[Any]:
        wrap = self.admin_site.admin_view
        name = f"{self.opts.app_label}_{self.opts.model_name}"
        instance = "<str:actor>/<str:actor_id>/"
        return [
            path("", wrap(self.changelist_view), name=f"{name}_changelist"),
            path("inventory.json", wrap(self.inventory_json), name=f"{name}_inventory"),
            path(instance, wrap(self.detail_view), name=f"{name}_detail"),
            path(instance + "live.json", wrap(self.live_json), name=f"{name}_live"),
            *(
                path(instance + f"{action}/", wrap(self.action_view), {"action": action}, name=f"{name}_{action}")
                for action in ACTIONS
            ),
        ]

    def _url(self, what: str, *args: str) -> str:
        return reverse(f"{self.admin_site.name}:{self.opts.app_label}_{self.opts.model_name}_{what}", args=args)

    def _instance_url(self, what: str, actor: str, actor_id: str) -> str:
        return self._url(what, quote(actor), quote(actor_id))

    def _context(self, request: HttpRequest, **more: Any) -> dict[str, Any]:
        return {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "app_label": self.opts.app_label,
            "has_view_permission": self.has_view_permission(request),
            "has_change_permission": self.has_change_permission(request),
            "changelist_url": self._url("changelist"),
            **more,
        }

    # -- asking the workers ------------------------------------------------------------

    def _inventory(self) -> tuple[list[WorkerReport], str | None]:
        """Every worker's report, or ``([], why)`` when no worker can be asked from here."""
        try:
            return _reports(self.ops_timeout), None
        except NodeUnavailable:
            return [], (
                "This page is not served by the ASGI server that runs the actors (daphne), so there is "
                "no node to ask. Serve the admin from the same ASGI application as the WebSocket."
            )
        except Silent:
            return [], "The server's event loop did not answer in time."

    @staticmethod
    def _rows(reports: list[WorkerReport]) -> list[dict[str, Any]]:
        now = time.time()
        rows = []
        for report in reports:
            for info in report.instances:
                rows.append(
                    {
                        **info,
                        "worker": report.label,
                        "worker_channel": report.channel,
                        "activated": when(info["activated_at"]),
                        "activated_text": ago(now - info["activated_at"]),
                        "last_activity_text": ago(now - info["last_activity"]),
                        "key": key_of(info["actor"], info["actor_id"]),
                    }
                )
        return rows

    # -- the list ----------------------------------------------------------------------------

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        self._require(request)
        if request.method == "POST":
            return self._bulk_action(request)
        reports, problem = self._inventory()
        rows = self._rows(reports)
        total = len(rows)
        per_actor = Counter(r["actor"] for r in rows)
        per_worker = Counter(r["worker_channel"] for r in rows)

        params = request.GET
        actor = params.get("actor")
        worker = params.get("worker")
        query = params.get("q", "").strip()
        if actor is not None:
            rows = [r for r in rows if r["actor"] == actor]
        if worker is not None:
            rows = [r for r in rows if r["worker_channel"] == worker]
        if query:
            rows = [r for r in rows if query.lower() in r["actor_id"].lower()]

        order = params.get("o", DEFAULT_ORDER)
        field = order.lstrip("-")
        if field not in SORT_KEYS:
            order = field = DEFAULT_ORDER
        descending = order.startswith("-")
        rows.sort(key=lambda r: (r["actor"], r["actor_id"]))
        rows.sort(key=lambda r: _sortable(r.get(field)), reverse=descending)
        for row in rows:
            row["url"] = self._instance_url("detail", row["actor"], row["actor_id"])

        def link(**changes: str | None) -> str:
            merged = dict(params.items())
            for k, v in changes.items():
                if v is None:
                    merged.pop(k, None)
                else:
                    merged[k] = v
            return "?" + urlencode(merged) if merged else "?"

        headers = []
        for key, title in COLUMNS:
            sorted_here = key == field
            ascending = sorted_here and not descending
            headers.append(
                {
                    "key": key,
                    "title": title,
                    "sorted": sorted_here,
                    "ascending": ascending,
                    "url": link(o=f"-{key}" if ascending else key),
                    "remove_url": link(o=None),
                }
            )

        actor_choices = [{"display": "All", "selected": actor is None, "url": link(actor=None)}] + [
            {"display": f"{name} ({count})", "selected": name == actor, "url": link(actor=name)}
            for name, count in sorted(per_actor.items())
        ]
        worker_choices = [{"display": "All", "selected": worker is None, "url": link(worker=None)}] + [
            {
                "display": f"{r.label} ({per_worker.get(r.channel, 0)})" + ("" if r.answered else " — no answer"),
                "selected": r.channel == worker,
                "url": link(worker=r.channel),
            }
            for r in reports
        ]
        context = self._context(
            request,
            title="Hot actors",
            problem=problem,
            rows=rows,
            total=total,
            shown=len(rows),
            per_actor=sorted(per_actor.items()),
            headers=headers,
            query=query,
            hidden_params=[(k, v) for k, v in params.items() if k != "q"],
            filters=[("actor name", actor_choices), ("worker", worker_choices)],
            has_active_filters=actor is not None or worker is not None,
            clear_filters_url=link(actor=None, worker=None),
            reports=reports,
            silent=[r for r in reports if not r.answered],
            failed=[r for r in reports if r.error],
            ops_timeout=self.ops_timeout,
            actions=[(a, f"{ACTION_TEXT[a]['title']} selected hot actors") for a in ACTIONS],
            **(extra_context or {}),
        )
        return TemplateResponse(request, self.list_template, context)

    def inventory_json(self, request: HttpRequest) -> JsonResponse:
        """The whole inventory as JSON (scripts, tests)."""
        self._require(request)
        reports, problem = self._inventory()
        return JsonResponse(
            {
                "problem": problem,
                "workers": [
                    {
                        "channel": r.channel,
                        "label": r.label,
                        "described": r.described,
                        "answered": r.answered,
                        "error": r.error,
                        "instances": len(r.instances),
                    }
                    for r in reports
                ],
                "instances": [{**info, "worker_label": r.label} for r in reports for info in r.instances],
            }
        )

    # -- one instance -------------------------------------------------------------------------

    def _inspect(self, actor: str, actor_id: str) -> tuple[dict[str, Any] | None, str | None]:
        """``(details, None)``, ``(None, None)`` when not hot, ``(None, why)`` when nobody could tell."""

        async def work(ops: Operations) -> dict[str, Any] | None:
            details = await ops.inspect(actor, actor_id, self.ops_timeout)
            if details is not None:
                workers = await ops.workers(max_age=5.0)  # for labels only; polled every second
                for item in (details, *details["clients_detail"]):
                    item["worker_label"] = worker_label(workers.get(item["worker"]), item["worker"])
            return details

        try:
            return on_node(work, self.ops_timeout + 2), None
        except NodeUnavailable:
            return None, "This page is not served by the ASGI server that runs the actors."
        except Silent:
            return None, "The worker running this actor did not answer in time."
        except Failed as exc:
            return None, f"The worker running this actor failed to answer: {exc}"

    @staticmethod
    def _present(details: dict[str, Any]) -> dict[str, Any]:
        """What the detail page shows, as text (the page and ``live.json`` share it)."""
        now = time.time()
        return {
            "fields": [
                ("actor", "Actor", details["actor"]),
                ("actor_id", "Id", details["actor_id"]),
                ("worker", "Worker", f"{details['worker_label']} ({details['worker']})"),
                ("clients", "Clients", str(details["clients"])),
                ("state_subscribers", "State subscribers", str(details["state_subscribers"])),
                ("event_subscribers", "Event subscribers", str(details["event_subscribers"])),
                ("queued", "Queued steps", f"{details['queued']}" + (" (running one)" if details["busy"] else "")),
                ("version", "Version", str(details["version"])),
                ("activated_at", "Activated", when(details["activated_at"]).strftime("%Y-%m-%d %H:%M:%S UTC")),
                ("last_activity", "Last activity", ago(now - details["last_activity"])),
                ("persist", "Persistence", details.get("persist") or "none"),
            ],
            "state": json.dumps(details["state"], indent=2, ensure_ascii=False, sort_keys=False),
            "version": details["version"],
            "clients": [
                [
                    c["client_id"],
                    c["username"] or (f"user {c['user_id']}" if c["user_id"] else "anonymous"),
                    c["worker_label"],
                    ", ".join(c["subscriptions"]) or "—",
                ]
                for c in details["clients_detail"]
            ],
            "recent": [
                [
                    when(s["at"]).strftime("%H:%M:%S.%f")[:-3],
                    s["step"],
                    s["client_id"] or "—",
                    s["outcome"],
                    str(s["version"]),
                ]
                for s in details["recent"]
            ],
        }

    def detail_view(self, request: HttpRequest, actor: str, actor_id: str) -> HttpResponse:
        self._require(request)
        actor, actor_id = unquote(actor), unquote(actor_id)
        details, problem = self._inspect(actor, actor_id)
        context = self._context(
            request,
            title=f"{actor} / {actor_id}",
            actor=actor,
            actor_id=actor_id,
            problem=problem,
            details=details,
            shown=self._present(details) if details else None,
            live_url=self._instance_url("live", actor, actor_id),
            action_urls=[(a, ACTION_TEXT[a]["title"], self._instance_url(a, actor, actor_id)) for a in ACTIONS],
        )
        return TemplateResponse(request, self.detail_template, context)

    def live_json(self, request: HttpRequest, actor: str, actor_id: str) -> JsonResponse:
        """The detail page's data, polled by its script every second."""
        self._require(request)
        details, problem = self._inspect(unquote(actor), unquote(actor_id))
        if details is None:
            return JsonResponse({"hot": False, "problem": problem})
        return JsonResponse({"hot": True, "problem": None, **self._present(details)})

    # -- actions ------------------------------------------------------------------------------

    def _act(self, action: str, targets: list[tuple[str, str]]) -> list[tuple[tuple[str, str], bool | str]]:
        """Carry out ``action`` on each target on its owner; per target True, False (not hot) or why not."""
        wait = zocket_settings().call_budget + self.ops_timeout  # queued steps first, then the save

        async def work(ops: Operations) -> list[bool | str]:
            async def one(target: tuple[str, str]) -> bool | str:
                try:
                    return await ops.act(action, *target, timeout=wait)
                except Silent:
                    return "the worker running it did not confirm in time"
                except Failed as exc:
                    return str(exc)

            return list(await asyncio.gather(*(one(t) for t in targets)))

        limit = wait + 5
        try:
            outcomes = on_node(work, limit)
        except NodeUnavailable:
            outcomes = ["this page is not served by the ASGI server that runs the actors"] * len(targets)
        except Silent:
            outcomes = ["the server did not answer in time"] * len(targets)
        return list(zip(targets, outcomes, strict=True))

    def _report(self, request: HttpRequest, action: str, results: list[tuple[tuple[str, str], bool | str]]) -> None:
        verb = ACTION_TEXT[action]["verb"]
        for (actor, actor_id), outcome in results:
            name = f"The hot actor “{actor} / {actor_id}”"
            if outcome is True:
                self.message_user(request, f"{name} was {verb}.", messages.SUCCESS)
            elif outcome is False:
                self.message_user(request, f"{name} was not hot any more.", messages.WARNING)
            else:
                self.message_user(request, f"{name} could not be {verb}: {outcome}.", messages.ERROR)

    def _confirm(
        self, request: HttpRequest, action: str, targets: list[tuple[str, str]], bulk: bool
    ) -> TemplateResponse:
        text = ACTION_TEXT[action]
        context = self._context(
            request,
            title="Are you sure?",
            action=action,
            action_title=text["title"],
            explain=text["explain"],
            targets=[
                {"actor": a, "actor_id": i, "key": key_of(a, i), "url": self._instance_url("detail", a, i)}
                for a, i in targets
            ],
            bulk=bulk,
            cancel_url=self._url("changelist") if bulk else self._instance_url("detail", *targets[0]),
        )
        return TemplateResponse(request, self.confirm_template, context)

    def action_view(self, request: HttpRequest, actor: str, actor_id: str, action: str) -> HttpResponse:
        self._require(request, change=True)
        target = (unquote(actor), unquote(actor_id))
        if request.method != "POST" or request.POST.get("post") != "yes":
            return self._confirm(request, action, [target], bulk=False)
        self._report(request, action, self._act(action, [target]))
        return HttpResponseRedirect(self._url("changelist"))

    def _bulk_action(self, request: HttpRequest) -> HttpResponse:
        self._require(request, change=True)
        action = request.POST.get("action", "")
        if action not in ACTIONS:
            self.message_user(request, "No action selected.", messages.WARNING)
            return HttpResponseRedirect(request.get_full_path())
        targets = [t for t in map(parse_key, request.POST.getlist("_selected_action")) if t is not None]
        if not targets:
            self.message_user(request, "Items must be selected in order to perform actions on them.", messages.WARNING)
            return HttpResponseRedirect(request.get_full_path())
        if request.POST.get("post") != "yes":
            return self._confirm(request, action, targets, bulk=True)
        self._report(request, action, self._act(action, targets))
        return HttpResponseRedirect(request.get_full_path())


def _sortable(value: Any) -> tuple[int, Any]:
    """None sorts first; numbers and strings among their kind."""
    if value is None:
        return (0, 0)
    if isinstance(value, bool | int | float):
        return (1, value)
    return (2, str(value).lower())


__all__ = ["HotActorAdmin", "hot_actor_url", "hot_instances"]
