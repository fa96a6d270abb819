"""A mistake found in a declaration, kept until ``manage.py check`` reports it.

Declarations are checked when their class is built (that is when a signature
becomes a validator), but reported later, all at once, by the system checks,
the way Django reports every broken model instead of the first.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Problem:
    #: The check id, e.g. ``"zocket.E003"`` (docs/checks.md lists them all).
    id: str
    #: What is wrong, without the class's name (``obj`` names it).
    message: str
    #: What to change.
    hint: str = ""
    #: The class the problem is in.
    obj: object = None

    def __str__(self) -> str:
        where = f"{getattr(self.obj, '__module__', '?')}.{getattr(self.obj, '__qualname__', '?')}"
        return f"{self.id} {where}: {self.message}" + (f" HINT: {self.hint}" if self.hint else "")
