"""`manage.py audit_public_key [--out FILE]`: the PEM an auditor verifies checkpoints with."""

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from audit.keys import public_key_pem


class Command(BaseCommand):
    help = "Print (or write) the audit log's Ed25519 public key in PEM."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--out", help="write the PEM to this file instead of printing it")

    def handle(self, *args: Any, **options: Any) -> None:
        pem = public_key_pem()
        if options.get("out"):
            Path(options["out"]).write_text(pem)
            self.stdout.write(f"Wrote {options['out']}")
        else:
            self.stdout.write(pem, ending="")
