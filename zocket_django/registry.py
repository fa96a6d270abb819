"""The actors of the project, found in every installed app's ``actors.py``."""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager

from django.utils.module_loading import autodiscover_modules

from .actor import Actor, ActorSpec, on_declare
from .problems import Problem


class Registry:
    """Actor classes by wire name, as the admin's site keeps model admins.

    Duplicates are kept so that checks can name them, and unnamed base
    classes so that checks can tell a base from a forgotten ``name``.
    """

    def __init__(self) -> None:
        self._specs: dict[str, ActorSpec] = {}
        self._duplicates: list[tuple[str, type[Actor], type[Actor]]] = []
        self._bases: weakref.WeakSet[type[Actor]] = weakref.WeakSet()

    def declared(self, cls: type[Actor]) -> None:
        """An ``Actor`` subclass was declared: serve it, or remember it as a base class."""
        if "name" in cls.__dict__:
            self.register(cls)
        else:
            self.register_base(cls)

    def register(self, cls: type[Actor]) -> None:
        """Serve ``cls`` under its ``name`` (done by declaring the class)."""
        spec = cls.spec
        existing = self._specs.get(spec.name)
        if existing is not None and existing.cls is not cls:
            if _same_class(existing.cls, cls):  # a module imported twice, or reloaded
                self._specs[spec.name] = spec
                return
            self._duplicates.append((spec.name, existing.cls, cls))
            return
        self._specs[spec.name] = spec

    def unregister(self, actor: type[Actor] | str) -> None:
        """Stop serving an actor class (or wire name); ``KeyError`` if it is not served."""
        name = actor if isinstance(actor, str) else actor.spec.name
        spec = self._specs.get(name)
        if spec is None or (not isinstance(actor, str) and spec.cls is not actor):
            raise KeyError(f"no actor {name!r} is registered" + ("" if isinstance(actor, str) else f" as {actor!r}"))
        del self._specs[name]
        self._duplicates = [d for d in self._duplicates if d[0] != name]

    def register_base(self, cls: type[Actor]) -> None:
        """Remember an actor class without ``name`` (a base class, or a mistake)."""
        self._bases.add(cls)

    def get(self, name: str) -> ActorSpec | None:
        return self._specs.get(name)

    def specs(self) -> list[ActorSpec]:
        return list(self._specs.values())

    def problems(self) -> list[Problem]:
        """Every problem found in the declarations (``manage.py check`` reports them)."""
        found = [p for spec in self._specs.values() for p in spec.problems]
        for name, first, second in self._duplicates:
            found.append(
                Problem(
                    "zocket.E001",
                    f"actor name {name!r} is already used by {_path(first)}",
                    "Wire names are global: give one of them another name.",
                    second,
                )
            )
        served = [spec.cls for spec in self._specs.values()]
        for base in sorted(self._bases, key=_path):
            if base.__dict__.get("abstract") is True or any(issubclass(cls, base) for cls in served):
                continue
            found.append(
                Problem(
                    "zocket.E013",
                    "this actor class has no name, so it is not served",
                    'Set name = "..." (the wire name), or abstract = True if it is a base class.',
                    base,
                )
            )
        return found

    @contextmanager
    def isolated(self) -> Iterator[Registry]:
        """Within the block, actors declared are registered here and forgotten after it.

        Those served before stay served inside. The registry of a test, as
        Django's ``isolate_apps``; ``zocket_django.testing.isolate_actors`` wraps it.
        """
        saved = dict(self._specs), list(self._duplicates), set(self._bases)
        try:
            yield self
        finally:
            self._specs, self._duplicates = saved[0], saved[1]
            self._bases = weakref.WeakSet(saved[2])


def _path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _same_class(a: type, b: type) -> bool:
    return _path(a) == _path(b)


registry = Registry()
on_declare(registry.declared)


def autodiscover() -> None:
    """Import ``actors`` from every installed app, as the admin imports ``admin``."""
    autodiscover_modules("actors")
