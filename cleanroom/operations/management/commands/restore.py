"""`manage.py restore DIR`: restore a backup into the configured (new or empty) database.

Checks the manifest, every SHA-256 and the key ids before writing anything; afterwards
verifies the audit log, proves its newest checkpoint extends the backup's, reconciles the
ledger, and prints the figures as JSON. `--check` only checks.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from cleanroom.operations.services import BackupFailed, backup_check, backup_restore


class Command(BaseCommand):
    help = "Restore a backup made by `manage.py backup` into a new or empty database."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("source", help="the backup folder (holds manifest.json)")
        parser.add_argument("--check", action="store_true", help="check only; write nothing")
        parser.add_argument("--quiet", action="store_true", help="no progress bars")

    def handle(self, *args: Any, **options: Any) -> None:
        progress: Any = (lambda **kw: tqdm(disable=True, **kw)) if options["quiet"] else tqdm
        source = Path(options["source"])
        try:
            if options["check"]:
                manifest = backup_check(source=source, progress=progress)
                self.stdout.write(
                    f"Backup {manifest['backup_id']}: every hash matches and its keys are "
                    "configured here."
                )
                return
            report = backup_restore(source=source, progress=progress)
        except BackupFailed as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(json.dumps(report.as_dict(), indent=2))
        self.stdout.write(
            f"Restored backup {report.backup_id} into {report.database}: the audit log verifies "
            f"and checkpoint {report.restored_checkpoint} extends the backup's "
            f"{report.backup_checkpoint}; the ledger reconciles."
        )
