"""Admin views of payouts: read-only (money moves only through the services and the ledger)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from payouts.models import Account, Distribution, JournalEntry, Payout, Posting, Settlement


class ReadOnlyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Account)
class AccountAdmin(ReadOnlyAdmin):
    list_display = ("pk", "kind", "currency", "organization", "balance", "is_non_negative")
    list_filter = ("kind", "currency")


@admin.register(JournalEntry)
class JournalEntryAdmin(ReadOnlyAdmin):
    list_display = ("pk", "key", "kind", "settlement", "created_at")
    list_filter = ("kind",)
    search_fields = ("key",)


@admin.register(Posting)
class PostingAdmin(ReadOnlyAdmin):
    list_display = ("pk", "entry", "account", "contributor_pk", "currency", "amount")
    raw_id_fields = ("entry", "account")


@admin.register(Distribution)
class DistributionAdmin(ReadOnlyAdmin):
    list_display = ("query_id", "dataset", "organization", "gross", "fee", "pool_size", "share")
    exclude = ("membership",)


@admin.register(Settlement)
class SettlementAdmin(ReadOnlyAdmin):
    list_display = ("pk", "currency", "status", "contributor_count", "total_amount", "merkle_root")


@admin.register(Payout)
class PayoutAdmin(ReadOnlyAdmin):
    list_display = ("pk", "settlement", "contributor", "amount", "currency", "status", "provider")
    list_filter = ("status", "provider")
    exclude = ("iban", "holder_name")  # bank details never shown in the admin
