"""zocket_django's tables: the saved state of durable actor instances; and a table-less model.

``HotActor`` has no table: hot instances live in worker processes, not in the
database. This unmanaged model gives the Django admin a "Hot actors" entry
under "Zocket" and two permissions: ``zocket_django.view_hotactor`` (see the
list, the details and the live state) and ``zocket_django.change_hotactor``
(deactivate, destroy). Its pages are in ``admin_hot_actors.py``.
"""

from __future__ import annotations

from django.db import models


class Snapshot(models.Model):
    """The last saved state of one actor instance (an actor name plus an id).

    Written by ``zocket_django.persistence`` for actors with ``persist`` set;
    read back when the instance is activated. ``version`` is the instance's
    wire version at the time of the save, ``schema_version`` the actor's
    ``schema_version`` that the state was written with. ``calls`` is where
    earlier versions kept the whole window of recent keyed calls
    (``callkeys.CallWindow.dump``); outcomes are now ``CallOutcome`` rows, and
    this column is only read (its entries are moved to rows by the next save,
    which empties it).
    """

    actor = models.CharField(max_length=100, help_text="The actor's wire name.")
    actor_id = models.CharField("actor id", max_length=255)
    state = models.JSONField(help_text="The state model dumped as JSON.")
    version = models.PositiveBigIntegerField(default=0, help_text="The instance's version when saved.")
    state_version = models.PositiveBigIntegerField(
        null=True,
        blank=True,
        help_text="The version the state column was written at, when steps after it are in the patch log "
        "(empty: the state is at version).",
    )
    schema_version = models.PositiveIntegerField(
        default=1, help_text="The actor's schema_version the state was written with."
    )
    calls = models.JSONField(
        default=list,
        blank=True,
        help_text="Outcomes of recent keyed calls, saved with the state so that a retry never runs twice.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["actor", "actor_id"], name="zocket_snapshot_actor_id")]
        ordering = ["actor", "actor_id"]
        verbose_name = "actor snapshot"

    def __str__(self) -> str:
        return f"{self.actor}/{self.actor_id} v{self.version}"


class SnapshotPatch(models.Model):
    """One saved step of a write-through instance: the RFC 6902 patches from ``version - 1``.

    Applied on top of the snapshot's ``state`` when the instance is restored;
    folded into it (and deleted) now and then, see ``zocket_django.persistence``.
    """

    actor = models.CharField(max_length=100)
    actor_id = models.CharField("actor id", max_length=255)
    version = models.PositiveBigIntegerField(help_text="The instance's version after this step.")
    patches = models.JSONField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["actor", "actor_id", "version"], name="zocket_snapshotpatch_version")
        ]
        verbose_name = "snapshot patch"

    def __str__(self) -> str:
        return f"{self.actor}/{self.actor_id} v{self.version}"


class CallOutcome(models.Model):
    """The kept outcome of one keyed call of a durable actor instance (``callkeys``), one row each.

    Inserted in the same transaction as the state the call produced, so a
    retry after a crash or a failover finds it; a save writes only the
    outcomes kept since the last one, whatever the window holds (issue 17:
    a step costs what it changed). Rows older than ``CALL_KEY_SECONDS`` are
    never read again and are deleted in bulk now and then (``persistence``).
    """

    actor = models.CharField(max_length=100)
    actor_id = models.CharField("actor id", max_length=255)
    caller = models.CharField(max_length=255, help_text="The caller's identity the key belongs to.")
    key = models.CharField(max_length=128)
    fingerprint = models.CharField(max_length=32, help_text="The call the key was first used for.")
    outcome = models.TextField(help_text="The encoded rpc:result body (a result, or an error).")
    at = models.FloatField(help_text="When the call ran (Unix seconds).")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["actor", "actor_id", "caller", "key"], name="zocket_calloutcome_key")
        ]
        verbose_name = "kept call outcome"

    def __str__(self) -> str:
        return f"{self.actor}/{self.actor_id} {self.caller} {self.key}"


class HotActor(models.Model):
    """The admin's entry and permissions for the hot actors (no table, never instantiated)."""

    class Meta:
        managed = False
        default_permissions = ("view", "change")
        verbose_name = "hot actor"
        verbose_name_plural = "hot actors"

    def __str__(self) -> str:  # never instantiated from rows: there are none
        return "hot actor"
