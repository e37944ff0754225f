"""`manage.py backup --out DIR`: the database and the encrypted pool segments, one moment.

See cleanroom/operations/services.py. The KEK and the audit key are never written into
the backup: keep them apart from it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from cleanroom.operations.services import BackupFailed, backup_create


class Command(BaseCommand):
    help = "Back up the database and the pool segments into a new folder, with a manifest."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--out", required=True, help="a new (or empty) folder")
        parser.add_argument("--quiet", action="store_true", help="no progress bars")

    def handle(self, *args: Any, **options: Any) -> None:
        progress: Any = (lambda **kw: tqdm(disable=True, **kw)) if options["quiet"] else tqdm
        try:
            manifest = backup_create(destination=Path(options["out"]), progress=progress)
        except BackupFailed as exc:
            raise CommandError(str(exc)) from exc
        database = manifest["database"]
        checkpoint = manifest["audit"]["checkpoint"]
        self.stdout.write(
            f"Backup {manifest['backup_id']} in {options['out']} ({manifest['seconds']} s): "
            f"{database['vendor']} database {database['bytes']:,} bytes, "
            f"{len(manifest['segments'])} pool segment(s) "
            f"{sum(s['bytes'] for s in manifest['segments']):,} bytes, "
            f"{manifest['audit']['entries']} audit entries "
            f"(checkpoint {checkpoint['tree_size'] if checkpoint else 'none'}), "
            f"KEK ids {', '.join(manifest['keys']['kek_ids']) or 'none'}, "
            f"audit key {manifest['keys']['audit_key_id']}. No key is in the backup."
        )
