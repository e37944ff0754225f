"""Admin views of datasets. Contributions, keys and segments are not registered: the admin
never shows ciphertext, wrapped keys or anything decrypted."""

from django.contrib import admin

from cleanroom.datasets.models import Consent, Dataset, Erasure


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = ("slug", "name", "terms_version", "total_epsilon", "spent_epsilon")
    # Changes go through the API/portal services (terms versions, audit): read-only here.
    readonly_fields = [f.name for f in Dataset._meta.fields]


@admin.register(Consent)
class ConsentAdmin(admin.ModelAdmin):
    list_display = ("contributor", "dataset", "terms_version", "given_at", "withdrawn_at")
    list_filter = ("dataset",)
    readonly_fields = ("contributor", "dataset", "terms_version", "given_at", "withdrawn_at")


@admin.register(Erasure)
class ErasureAdmin(admin.ModelAdmin):
    list_display = ("contributor", "status", "requested_at", "completed_at", "rows_removed")
    readonly_fields = ("contributor", "status", "requested_at", "completed_at", "rows_removed")
