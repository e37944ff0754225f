"""`manage.py rotate_kek`: re-wrap every data key under the current CLEANROOM_KEK.

Set the new key in CLEANROOM_KEK and the old one(s) in CLEANROOM_KEK_PREVIOUS, run
this command, then drop the old key from CLEANROOM_KEK_PREVIOUS. Records are not
re-encrypted: only the small wrapped keys change.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from cleanroom.datasets.crypto import KeyUnavailable, current_kek
from cleanroom.datasets.services import kek_rotate


class Command(BaseCommand):
    help = "Re-wrap data keys and pool segment keys under the current CLEANROOM_KEK."

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            kek_id, _ = current_kek()
            counts = kek_rotate()
        except (KeyUnavailable, ValueError) as exc:
            raise CommandError(
                f"{exc}. Put the key that wrapped them in CLEANROOM_KEK_PREVIOUS."
            ) from exc
        self.stdout.write(
            f"Re-wrapped {counts['data_keys']} data key(s) and {counts['segment_keys']} "
            f"segment key(s) under KEK {kek_id}."
        )
