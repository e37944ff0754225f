"""Admin views of datasets: read-only lists for operators, never a way to change them.

Every change to a dataset, consent or erasure goes through the services, which bump
terms versions, keep the pool's invariants (``pool._excluded`` relies on consent records
never being deleted) and record an audit event in the same transaction. The admin has
no add, change or delete permission on any datasets model, even for a superuser, and
the database refuses to delete consent records whatever the client (migration 0007).
Contributions, keys and segments are not registered: the admin never shows
ciphertext, wrapped keys or anything decrypted.
"""

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from cleanroom.datasets.models import Consent, Dataset, Erasure


class ReadOnlyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Lists and detail pages only: no add, change or delete, and no bulk delete action."""

    actions = None

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Dataset)
class DatasetAdmin(ReadOnlyAdmin):
    list_display = ("slug", "name", "terms_version", "total_epsilon", "spent_epsilon")


@admin.register(Consent)
class ConsentAdmin(ReadOnlyAdmin):
    list_display = ("contributor", "dataset", "terms_version", "given_at", "withdrawn_at")
    list_filter = ("dataset",)


@admin.register(Erasure)
class ErasureAdmin(ReadOnlyAdmin):
    list_display = ("contributor", "status", "requested_at", "completed_at", "rows_removed")
