"""`manage.py audit_export --out FILE`: the JSON Lines export that `python -m audit.verify` reads."""

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from audit.selectors import export_lines


class Command(BaseCommand):
    help = "Write the whole audit log with its signed checkpoints as JSON Lines."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--out", help="file to write (default: stdout)")

    def handle(self, *args: Any, **options: Any) -> None:
        if options.get("out"):
            with open(options["out"], "wb") as handle:
                for chunk in export_lines():
                    handle.write(chunk)
            self.stdout.write(f"Wrote {options['out']}")
        else:
            for chunk in export_lines():
                sys.stdout.buffer.write(chunk)
            sys.stdout.flush()
