"""Admin views of queries: read-only (changes go through the services and the audit log)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from cleanroom.queries.models import BudgetCharge, Query


class ReadOnlyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Query)
class QueryAdmin(ReadOnlyAdmin):
    list_display = ("pk", "dataset", "organization", "status", "epsilon", "price", "created_at")
    list_filter = ("status", "dataset")
    # The result holds only noisy releases; it is still shown to compliance via the API.
    exclude = ("result",)


@admin.register(BudgetCharge)
class BudgetChargeAdmin(ReadOnlyAdmin):
    list_display = ("query", "dataset", "organization", "epsilon", "state", "created_at")
    list_filter = ("state", "dataset")
