"""Durable actors: state snapshots through the ORM, restored on activation.

An actor chooses how its state survives the process with ``persist``:

``Persist.NONE`` (the default)
    Nothing is saved; every activation starts from the ``State`` defaults.
``Persist.ON_DEACTIVATE``
    The state is saved when the instance is deactivated (idle eviction,
    ``hot_actors.deactivate``, a clean shutdown) and, with
    ``checkpoint_every = seconds``, also periodically while it is hot. A crash
    loses the changes made since the last save.
``Persist.WRITE_THROUGH``
    Every step that changed the state is committed to the database before its
    patch is published and its ``rpc:result`` sent. A save that fails undoes
    the step (state and version) and answers ``unavailable``: an acknowledged
    change is never lost.

All database work runs in one of zocket's database threads (``db.to_thread``) from
inside a step of the instance's own queue, so it never blocks the event loop
and never runs out of order with the instance's calls. The runtime calls in
at three places: ``Store.restore`` when an instance activates,
``Store.commit`` after a step changed the state (write-through only), and
``Store.close`` when it deactivates.

A snapshot that no longer validates against the ``State`` model, or that was
written with another ``schema_version``, goes through the actor's
``upgrade_state(data, schema_version)`` classmethod. Without one, or when the
upgrade fails, the activation fails loudly (logged, and callers are answered
``unavailable``); the snapshot is never replaced by defaults.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from pydantic import BaseModel, ValidationError

from . import protocol, snapshot_rows, transactions
from .actor import Persist
from .call_rows import OutcomeRows, Row
from .errors import ZocketError
from .protocol import Code
from .snapshot_rows import (
    SnapshotConflict,
    append_patches,
    delete_snapshot,
    in_db_thread,
    load_measured,
    save_measured,
    vendor,
)

if TYPE_CHECKING:
    from .actor import Actor, ActorSpec
    from .callkeys import CallWindow

log = logging.getLogger(__name__)

T = TypeVar("T")

#: A write-through state at least this large (as JSON) saves its steps as patch rows.
LOG_MIN_BYTES = 64 * 1024
#: Patch rows of one instance before they are folded into its snapshot, whatever their size.
MAX_LOG_ROWS = 1000
#: Rows are folded into the snapshot when they add up to this many times the state's size:
#: writing the state whole then costs at most about as much as the rows did.
FOLD_AT = 1.0
#: Databases that rewrite a whole row to change one column (SQLite does): there a
#: patch row, which moves the snapshot row's version, would cost a whole write.
REWRITE_ROWS = frozenset({"sqlite"})


class ActivationFailed(ZocketError):
    """An instance could not be brought back from its snapshot.

    Every request queued behind the failed activation is answered with this
    error (``unavailable``); the instance is not kept hot, so the next request
    tries again.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message, code=Code.UNAVAILABLE)


# -- one instance's link to its snapshot ---------------------------------------------


class Store:
    """What an instance of a non-persistent actor does with its state: nothing."""

    write_through = False

    async def restore(self) -> None:
        pass

    def start(self) -> None:
        pass

    async def commit(self, dump: Any, version: int, patches: list[dict[str, Any]]) -> None:
        pass

    async def verify(self) -> None:
        pass

    async def close(self, *, destroy: bool = False) -> None:
        pass


NO_STORE = Store()


class Held(Protocol):
    """What a store needs of its instance (``instance.Instance``)."""

    spec: ActorSpec
    actor_id: str
    actor: Actor
    version: int
    #: Outcomes of recent keyed calls: those kept since the last save are saved with the state (as rows).
    calls: CallWindow

    @property
    def dump(self) -> Any: ...

    @property
    def active(self) -> bool: ...

    def reset_state(self, state: BaseModel) -> None: ...

    def enqueue(self, step: Callable[[], Awaitable[None]]) -> None: ...

    def log_context(self, **more: Any) -> dict[str, Any]: ...


def store_for(inst: Held, lose: Callable[[], None]) -> Store:
    """The store of a new instance, by its actor's ``persist`` mode.

    ``lose`` lets the instance go from this worker (without hooks or saves)
    when its snapshot shows another worker took it over.
    """
    if inst.spec.persist == Persist.NONE:
        return NO_STORE
    return SnapshotStore(inst, lose)


class SnapshotStore(Store):
    """An instance of a durable actor, tied to its ``Snapshot`` row."""

    def __init__(self, inst: Held, lose: Callable[[], None]) -> None:
        self.inst = inst
        self.lose = lose
        self.spec: ActorSpec = inst.spec
        self.write_through = self.spec.persist == Persist.WRITE_THROUGH
        #: ``False`` until the saved state came back: nothing is ever written before.
        self.loaded = False
        #: The version the database holds (``None``: it holds nothing of ours yet).
        self.saved_version: int | None = None
        #: The restored state was upgraded and must be written back.
        self.upgraded = False
        self._checkpoints: asyncio.Task[None] | None = None
        #: Steps may be saved as patch rows (write-through, on a database that keeps large values out of the row).
        self.logs = self.write_through and vendor() not in REWRITE_ROWS
        #: Size of the state as last written whole (or restored), and what the patch rows since add up to.
        self.state_bytes = 0
        self.log_bytes = 0
        self.log_rows = 0
        self._compaction_queued = False
        #: When the instance's saved call outcomes should be expired (``call_rows``).
        self.outcome_rows = OutcomeRows(inst.calls)

    @property
    def dirty(self) -> bool:
        return self.loaded and (self.upgraded or self.inst.version != (self.saved_version or 0))

    def _name(self) -> str:
        return f"{self.spec.name}/{self.inst.actor_id}"

    # -- activation -----------------------------------------------------------------

    async def restore(self) -> None:
        """Load the snapshot into the instance (state and version); raise ``ActivationFailed``."""
        inst = self.inst
        try:
            since = time.time() - inst.calls.seconds  # older outcome rows are never read again
            row = await in_db_thread(load_measured, self.spec.name, inst.actor_id, since, reads_only=True)
        except Exception as exc:
            log.exception("zocket: could not load the snapshot of %s", self._name(), extra=inst.log_context())
            raise ActivationFailed(f"{self._name()} is unavailable: its saved state could not be loaded") from exc
        if row is not None:
            data, version, schema_version, self.log_rows, legacy, self.state_bytes, outcomes, oldest = row
            inst.reset_state(self._validate(data, schema_version, version))
            inst.version = version
            inst.calls.load(legacy, time.time(), outcomes)  # ``legacy``: a window saved whole by 0.x
            self.outcome_rows.oldest = oldest
            self.saved_version = version
            self.log_bytes = self.state_bytes if self.log_rows else 0  # fold the rows in soon
        self.loaded = True

    def _validate(self, data: Any, schema_version: int, version: int) -> BaseModel:
        cls, model = self.spec.cls, self.spec.state_model
        current = self.spec.schema_version
        problem: Exception | None = None
        if schema_version == current:
            try:
                return model.model_validate(data)
            except ValidationError as exc:
                problem = exc
        upgrade = getattr(cls, "upgrade_state", None)
        why = (
            f"it does not validate against {model.__name__}"
            if problem is not None
            else f"it was written with schema_version {schema_version}, not {current}"
        )
        if upgrade is None:
            log.error(
                "zocket: refused the snapshot of %s (version %d): %s, and %s has no upgrade_state%s",
                self._name(),
                version,
                why,
                cls.__qualname__,
                f":\n{problem}" if problem is not None else "",
                extra=self.inst.log_context(),
            )
            raise ActivationFailed(f"{self._name()} is unavailable: its saved state does not fit the actor any more")
        try:
            upgraded = upgrade(copy.deepcopy(data), schema_version)
            state = model.model_validate(upgraded)
        except Exception:
            log.exception(
                "zocket: refused the snapshot of %s (version %d): %s, and %s.upgrade_state failed",
                self._name(),
                version,
                why,
                cls.__qualname__,
                extra=self.inst.log_context(),
            )
            raise ActivationFailed(f"{self._name()} is unavailable: its saved state could not be upgraded") from None
        log.info("zocket: upgraded the snapshot of %s from schema_version %d", self._name(), schema_version)
        self.upgraded = True
        return state

    def start(self) -> None:
        """The instance is hot: start periodic checkpoints if the actor asked for them."""
        every = self.spec.checkpoint_every
        if every:
            self._checkpoints = asyncio.get_running_loop().create_task(self._checkpoint_timer(every))

    async def _checkpoint_timer(self, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            if self.inst.active and self.dirty:
                self.inst.enqueue(self._checkpoint)

    async def _checkpoint(self) -> None:
        if self.inst.active and self.dirty:
            await self._save_quietly("checkpoint")

    # -- steps --------------------------------------------------------------------------

    async def commit(self, dump: Any, version: int, patches: list[dict[str, Any]]) -> None:
        """Write-through: the step's new state must be committed before anyone hears of it.

        A large state (``LOG_MIN_BYTES``) on a database that keeps large
        values out of the row is saved as one patch row per step; the rows are
        folded into the snapshot (``_compact``, queued behind the step) once
        they add up to the state's size, or number ``MAX_LOG_ROWS``.
        """
        try:
            if self.logs and self.saved_version is not None and not self.upgraded and self.state_bytes >= LOG_MIN_BYTES:
                await self._append(patches, version)
            else:
                await self._save(dump, version)
        except SnapshotConflict as exc:
            self._lost(exc)
            raise ZocketError("this actor moved to another worker; nothing changed", code=Code.UNAVAILABLE) from exc
        except Exception as exc:
            log.exception(
                "zocket: could not save %s at version %d; the step was undone",
                self._name(),
                version,
                extra=self.inst.log_context(),
            )
            raise ZocketError("the change could not be saved; nothing changed", code=Code.UNAVAILABLE) from exc

    async def verify(self) -> None:
        """Save now, fenced: raises ``SnapshotConflict`` when another worker saved since our last save."""
        if self.loaded:
            await self._save(self.inst.dump, self.inst.version)

    def _lost(self, exc: SnapshotConflict) -> None:
        log.error("zocket: %s; this worker lets the instance go", exc, extra=self.inst.log_context())
        self.lose()

    async def _append(self, patches: list[dict[str, Any]], version: int) -> None:
        assert self.saved_version is not None
        calls, expire = self.outcome_rows.pending(time.time())
        await in_db_thread(
            append_patches,
            self.spec.name,
            self.inst.actor_id,
            patches,
            version,
            self.saved_version,
            calls,
            expire,
        )
        size = len(protocol.encode(patches))  # type: ignore[arg-type]
        transactions.on_commit(functools.partial(self._appended, version, size, calls, expire))

    def _appended(self, version: int, size: int, calls: Sequence[Row], expired_before: float | None) -> None:
        self.outcome_rows.committed(calls, expired_before)
        self.saved_version = version
        self.log_rows += 1
        self.log_bytes += size
        full = self.log_bytes >= self.state_bytes * FOLD_AT or self.log_rows >= MAX_LOG_ROWS
        if full and not self._compaction_queued:
            self._compaction_queued = True
            self.inst.enqueue(self._compact)

    async def _compact(self) -> None:
        """Fold the patch rows into the snapshot: one whole write, after the steps queued before it."""
        self._compaction_queued = False
        inst = self.inst
        if not (inst.active and self.log_rows):
            return
        try:
            await self._save(inst.dump, inst.version)
        except SnapshotConflict as exc:
            self._lost(exc)
        except Exception:
            log.exception("zocket: could not fold the patch log of %s", self._name(), extra=inst.log_context())

    async def _save(self, dump: Any, version: int) -> None:
        if not self.loaded:  # never write over a snapshot we could not read
            raise RuntimeError(f"{self._name()} was not restored; refusing to save it")
        calls, expire = self.outcome_rows.pending(time.time())
        save = functools.partial(
            snapshot_rows.save_snapshot,  # looked up now: tests replace it
            self.spec.name,
            self.inst.actor_id,
            dump,
            version,
            self.spec.schema_version,
            self.saved_version,
            self.log_rows > 0,
            calls,  # only those kept since the last save: a retry after a crash finds what ran
            expire,
        )
        size = await in_db_thread(save_measured, save, dump, self.logs)
        transactions.on_commit(functools.partial(self._saved, version, size, calls, expire))

    def _saved(self, version: int, size: int, calls: Sequence[Row], expired_before: float | None) -> None:
        self.outcome_rows.committed(calls, expired_before)
        self.saved_version = version
        self.upgraded = False
        self.state_bytes = size
        self.log_rows = self.log_bytes = 0

    async def _save_quietly(self, why: str) -> None:
        inst = self.inst
        try:
            await self._save(inst.dump, inst.version)
        except Exception:
            log.exception(
                "zocket: the %s save of %s at version %d failed; changes since version %s are not saved",
                why,
                self._name(),
                inst.version,
                self.saved_version,
                extra=inst.log_context(),
            )

    # -- deactivation -------------------------------------------------------------------

    async def close(self, *, destroy: bool = False) -> None:
        """Save the final state, or with ``destroy`` delete the snapshot for good."""
        if self._checkpoints is not None:
            self._checkpoints.cancel()
            self._checkpoints = None
        if not self.loaded:
            return
        if destroy:
            await in_db_thread(delete_snapshot, self.spec.name, self.inst.actor_id)
            self.saved_version = None
        elif self.dirty:
            await self._save_quietly("deactivation")


async def forget(spec: ActorSpec, actor_id: str) -> bool:
    """Delete the snapshot of an instance that is not hot; ``True`` if there was one."""
    if spec.persist == Persist.NONE:
        return False
    return await in_db_thread(delete_snapshot, spec.name, actor_id)
