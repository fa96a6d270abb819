"""``manage.py zocket_typescript``: TypeScript types of every registered actor."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ...registry import registry
from ...typescript import FLAVORS, generate


class Command(BaseCommand):
    help = (
        "Writes TypeScript types of every registered actor (state, method inputs and results, "
        "event payloads) and `interface App` for createClient<App>() of zocket.js, or with "
        "--flavor zocket of Zocket's own client (@zocket/client)."
    )
    requires_system_checks: Any = []  # reported below, for the actors only

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--output", "-o", metavar="PATH", help="write to this .ts or .d.ts file instead of standard output"
        )
        parser.add_argument(
            "--flavor",
            choices=FLAVORS,
            default=FLAVORS[0],
            help="the client the types are for: zocket_django's zocket.js (default) or Zocket's own @zocket/client",
        )
        parser.add_argument(
            "--check",
            action="store_true",
            help="write nothing; fail if the --output file is missing or differs (for CI)",
        )

    def handle(
        self,
        *args: Any,
        output: str | None = None,
        check: bool = False,
        flavor: str = FLAVORS[0],
        **options: Any,
    ) -> None:
        problems = registry.problems()
        if problems:
            lines = "\n".join(f"  {problem}" for problem in problems)
            raise CommandError(f"broken actor declarations:\n{lines}")
        text = generate(registry.specs(), flavor)
        if check:
            if not output:
                raise CommandError("--check needs --output")
            path = Path(output)
            current = path.read_text(encoding="utf-8") if path.is_file() else None
            if current != text:
                again = f"manage.py zocket_typescript --output {output}" + (
                    f" --flavor {flavor}" if flavor != FLAVORS[0] else ""
                )
                raise CommandError(f"{output} is out of date; run {again}")
            self.stdout.write(f"{output} is up to date.")
        elif output:
            path = Path(output)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8", newline="\n")
            self.stderr.write(f"Wrote the types of {len(registry.specs())} actors to {output}.")
        else:
            self.stdout.write(text, ending="")
