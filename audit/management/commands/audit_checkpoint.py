"""`manage.py audit_checkpoint`: sign a checkpoint over the log now."""

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from audit.selectors import checkpoint_data
from audit.services import checkpoint_create
from cleanroom.errors import DomainError


class Command(BaseCommand):
    help = "Sign a checkpoint (tree size, root, chain head, time) over the audit log."

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            checkpoint = checkpoint_create()
        except DomainError as error:
            raise CommandError(error.detail) from error
        if checkpoint is None:
            self.stdout.write("The audit log is empty: nothing to sign.")
            return
        self.stdout.write(json.dumps(checkpoint_data(checkpoint), indent=2))
