"""The actors of the project, found in every installed app's ``actors.py``."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import autodiscover_modules

from .actor import Actor, ActorSpec, on_declare


class Registry:
    """Actor classes by wire name. Duplicates are kept so that checks can name them."""

    def __init__(self) -> None:
        self._specs: dict[str, ActorSpec] = {}
        self.duplicates: list[tuple[str, type[Actor], type[Actor]]] = []

    def register(self, cls: type[Actor]) -> None:
        spec = cls.spec
        existing = self._specs.get(spec.name)
        if existing is not None and existing.cls is not cls:
            if _same_class(existing.cls, cls):  # a module imported twice, or reloaded
                self._specs[spec.name] = spec
                return
            self.duplicates.append((spec.name, existing.cls, cls))
            return
        self._specs[spec.name] = spec

    def get(self, name: str) -> ActorSpec | None:
        return self._specs.get(name)

    def specs(self) -> list[ActorSpec]:
        return list(self._specs.values())

    def problems(self) -> list[tuple[str, str]]:
        """Every (check id, message) found in the declarations."""
        found = [p for spec in self._specs.values() for p in spec.problems]
        for name, first, second in self.duplicates:
            found.append(("zocket.E001", f"actor name {name!r} is used by both {_path(first)} and {_path(second)}"))
        return found

    def ensure_valid(self) -> None:
        """Fail loudly at startup, not on the first call, if a declaration is broken."""
        problems = self.problems()
        if problems:
            lines = "\n".join(f"  {code}: {msg}" for code, msg in problems)
            raise ImproperlyConfigured(f"zocket_django found broken actor declarations:\n{lines}")


def _path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _same_class(a: type, b: type) -> bool:
    return _path(a) == _path(b)


registry = Registry()
on_declare(registry.register)


def autodiscover() -> None:
    """Import ``actors`` from every installed app, as the admin imports ``admin``."""
    autodiscover_modules("actors")
