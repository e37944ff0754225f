"""`manage.py audit_verify`: recompute the chain and the tree, check every checkpoint."""

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from audit.selectors import log_verify


class Command(BaseCommand):
    help = "Verify the audit log in the database; exits non-zero when it does not verify."

    def handle(self, *args: Any, **options: Any) -> None:
        report = log_verify(parallel=True)
        self.stdout.write(json.dumps(report.as_dict(), indent=2))
        if not report.ok:
            raise CommandError(
                f"the audit log does not verify: first bad entry {report.first_bad_entry}: "
                f"{report.reason}"
            )
