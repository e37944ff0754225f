"""Admin views of identity: read-mostly; trust changes go through the audited services."""

from django.contrib import admin

from identity.models import ContributorCredential, PresentationRequest, TrustedIssuer


@admin.register(TrustedIssuer)
class TrustedIssuerAdmin(admin.ModelAdmin):
    list_display = ("name", "did", "credential_types", "updated_at")
    # Changes here would bypass the audit log: use the portal page or the API.
    readonly_fields = ("did", "name", "credential_types", "created_at", "updated_at")

    def has_add_permission(self, request):  # type: ignore[no-untyped-def]
        return False

    def has_delete_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False


@admin.register(PresentationRequest)
class PresentationRequestAdmin(admin.ModelAdmin):
    list_display = ("pk", "status", "credential_type", "created_at", "expires_at", "refusals")
    list_filter = ("status",)
    # The nonce and the response-decryption key are secrets of the wallet exchange.
    exclude = ("nonce", "encryption_key")
    readonly_fields = [
        f.name for f in PresentationRequest._meta.fields if f.name not in ("nonce", "encryption_key")
    ]

    def has_add_permission(self, request):  # type: ignore[no-untyped-def]
        return False


@admin.register(ContributorCredential)
class ContributorCredentialAdmin(admin.ModelAdmin):
    list_display = ("pk", "credential_type", "issuer_did", "expires_at", "last_verified_at")
    readonly_fields = [f.name for f in ContributorCredential._meta.fields]

    def has_add_permission(self, request):  # type: ignore[no-untyped-def]
        return False
