"""One instance's recorded state: the live models, the committed dump, and a step's journal.

The runtime brackets every step with ``begin`` and then either ``changes`` +
``commit`` or ``rollback``:

- ``changes(state)`` ends the step's recording and returns its patches. When
  every change was recorded, they come from the journal and are applied to the
  dump in place (``jsondoc``): the cost follows the change. Otherwise (see
  ``degrade``) the state is dumped and diffed whole, as before the recorder.
- ``commit`` makes the dump the committed one; after a whole diff it also
  registers the state again (so the next step is recorded).
- ``rollback`` replays the undo log backwards (and reverts the dump, if
  ``changes`` already applied the patches): no re-validation of the state.

A step is diffed whole when the recorder cannot vouch for its journal: the
state was replaced (``self.state = ...``), an object was put at a second place
of the state, a value of the wrong type was stored, a mutation happened while
no step ran (a background task or thread), or a node was not where its entry
said. ``VERIFY_PATCHES`` checks every recorded step against a full dump.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import BaseModel

from ..patches import diff
from . import dicts, jsondoc, lists  # noqa: F401  (lists and dicts add themselves to containers.KINDS)
from .containers import attach, forget
from .fronts import Fronts
from .registry import FLOATING, NODES, Entry, entry_of, locate
from .shapes import ModelShape, Untrackable, model_shape

log = logging.getLogger(__name__)


def shape_for(model: type[BaseModel]) -> ModelShape | None:
    """The recorder's view of a state model, or ``None`` when its steps must be diffed whole."""
    try:
        return model_shape(model)
    except Untrackable as exc:
        log.debug("zocket: %s is diffed whole after every step: %s", model.__qualname__, exc)
        return None


class Recorder:
    """The journal of one actor instance's state."""

    def __init__(self, model: type[BaseModel], state: BaseModel, *, verify: bool = False) -> None:
        self.model = model
        self.shape = shape_for(model)
        self.verify = verify
        self.root = state
        #: The committed state as JSON (what subscribers have), updated in place; read it as ``dump``.
        self._dump: Any = state.model_dump(mode="json")
        #: First items of its long lists removed, not cut out yet (cut before ``dump`` is read).
        self.fronts = Fronts()
        self.ids: set[int] = set()
        self.ops: list[tuple[str, list[str | int], Any, Any]] = []
        self.undo: list[tuple[Any, ...]] = []
        #: Nodes this step removed (``containers.detach``); forgotten when it ends.
        self.floating: list[Entry] = []
        self.recording = False
        #: This step's journal is complete (no whole diff needed).
        self.precise = False
        #: The next step is diffed whole (and the state registered again).
        self.stale = self.shape is None
        self._applied: jsondoc.Undo | None = None
        self._new_dump: Any = None
        if self.shape is not None:
            self._register(state)

    @property
    def dump(self) -> Any:
        """The committed state as JSON, every list cut to its items (``fronts``).

        Read between ``changes`` and ``commit``/``rollback``, a cut joins the
        step's undo log: undoing the step puts the dump back as it was.
        """
        if self.fronts.pending:
            self.fronts.cut_all(self._applied)
        return self._dump

    @property
    def recorded(self) -> bool:
        """Whether steps can be recorded at all (``False``: the model is diffed whole every step)."""
        return self.shape is not None

    # -- registration -------------------------------------------------------------

    def _register(self, state: BaseModel) -> None:
        self.release()
        self.root = state
        self.stale = False
        assert self.shape is not None
        attach(state, self.shape, None, None, self)

    def release(self) -> None:
        """Forget every node of this state (the instance is going away, or is registered anew).

        A step after this is diffed whole (and registers the state again).
        """
        self.stale = True
        for key in self.ids:
            entry = NODES.get(key)
            if entry is not None and entry.rec is self:
                del NODES[key]
        self.ids.clear()

    # -- what the containers and models report --------------------------------------

    def record(self, entry: Entry, kind: str, key: Any, value: Any) -> None:
        if not self.precise:
            return
        parts = locate(entry)
        if parts is None:
            self.degrade("a changed object was not where the recorder had it")
        elif parts is not FLOATING:  # a change to what the step removed is no patch
            self.ops.append((kind, parts, key, value))

    def degrade(self, why: str) -> None:
        """This step (and the next, until the state is registered again) is diffed whole."""
        if self.precise:
            log.debug("zocket: a step is diffed whole: %s", why)
        self.precise = False
        self.stale = True

    def outside(self) -> None:
        """The state changed while no step ran: the next step's diff will show it."""
        self.stale = True

    # -- steps ----------------------------------------------------------------------

    def begin(self) -> None:
        self.ops.clear()
        self.undo.clear()
        self._applied = self._new_dump = None
        self.precise = not self.stale
        self.recording = True

    def changes(self, state: BaseModel) -> list[dict[str, Any]]:
        """The step's patches; after this the dump is the new state's (until ``rollback``)."""
        self.recording = False
        if self.precise and state is self.root:
            try:
                patches, self._applied = jsondoc.apply(self._dump, self.ops, self.fronts)
            except jsondoc.Inconsistent as exc:
                log.warning("zocket: recorded changes did not fit the state (%s); diffing it whole", exc)
            else:
                if not self.verify:
                    return patches
                fresh = state.model_dump(mode="json")
                if fresh == self.dump:
                    return patches
                log.error("zocket: recorded patches %r do not give the state; diffing it whole", patches)
                jsondoc.revert(self._applied)
                self._applied = None
        self.precise = False
        self._new_dump = state.model_dump(mode="json")
        return diff(self.dump, self._new_dump)

    def commit(self, state: BaseModel) -> None:
        if self._new_dump is not None:
            self._dump = self._new_dump
            self.fronts = Fronts()
            if self.shape is not None:
                self._register(state)
            else:
                self.root = state
        self._end()

    def rollback(self) -> BaseModel:
        """Undo the step; returns the state to put back (the one the step started with)."""
        self.recording = False
        if self._applied is not None:
            jsondoc.revert(self._applied)
        if self.shape is None:  # nothing was recorded: rebuild from the committed dump
            self.root = self.model.model_validate(self.dump)
        else:
            try:
                for fn, *args in reversed(self.undo):
                    fn(*args)
            except Exception:  # the state changed under the undo (a thread still running): rebuild it
                log.exception("zocket: undoing a step failed; the state is rebuilt from the committed dump")
                self.root = self.model.model_validate(self.dump)
                self.precise = False
            if not self.precise:
                self._register(self.root)
        self._end()
        return self.root

    def _end(self) -> None:
        for entry in self.floating:
            if entry.key is FLOATING and entry_of(entry.node) is entry:
                forget(entry.node, entry.shape)
        self.floating.clear()
        self.ops.clear()
        self.undo.clear()
        self._applied = self._new_dump = None
