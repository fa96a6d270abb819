"""``HotActor``: no table, only the admin's entry and its permissions.

Hot instances live in worker processes, not in the database. This unmanaged
model gives the Django admin a "Hot actors" entry under "Zocket" and two
permissions: ``zocket_django.view_hotactor`` (see the list, the details and
the live state) and ``zocket_django.change_hotactor`` (deactivate, destroy).
"""

from django.db import models


class HotActor(models.Model):
    class Meta:
        managed = False
        default_permissions = ("view", "change")
        verbose_name = "hot actor"
        verbose_name_plural = "hot actors"

    def __str__(self) -> str:  # never instantiated from rows: there are none
        return "hot actor"
