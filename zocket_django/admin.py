"""zocket_django in the Django admin: the hot actors, and the saved snapshots."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.utils.html import format_html

from .admin_hot_actors import HotActorAdmin, hot_actor_url
from .models import HotActor, Snapshot

admin.site.register(HotActor, HotActorAdmin)


@admin.register(Snapshot)
class SnapshotAdmin(admin.ModelAdmin):
    """Snapshots are written by the runtime only: staff may read and delete them, never edit.

    Deleting the snapshot of an instance that is hot does not reset it: its
    next save writes the row again. ``hot_actors.destroy(name, id)`` does both.
    """

    list_display = ("actor", "actor_id", "version", "schema_version", "state_size", "updated_at", "live")
    list_filter = ("actor",)
    search_fields = ("actor", "actor_id")
    ordering = ("actor", "actor_id")
    date_hierarchy = "updated_at"
    list_per_page = 50
    fields = ("actor", "actor_id", "version", "schema_version", "updated_at", "live", "pretty_state")
    readonly_fields = fields

    @admin.display(description="state")
    def pretty_state(self, obj: Snapshot) -> str:
        text = json.dumps(obj.state, indent=2, sort_keys=True, ensure_ascii=False)
        return format_html('<pre style="white-space: pre-wrap; margin: 0">{}</pre>', text)

    @admin.display(description="live instance")
    def live(self, obj: Snapshot) -> str:
        """A link to the hot-actor page (which says so when the instance is not hot)."""
        return format_html('<a href="{}">live view</a>', hot_actor_url(obj.actor, obj.actor_id))

    @admin.display(description="state size (bytes)")
    def state_size(self, obj: Snapshot) -> int:
        return len(json.dumps(obj.state, separators=(",", ":"), ensure_ascii=False).encode())

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
