from django.contrib import admin
from django.contrib.auth.admin import UserAdmin

from cleanroom.accounts.models import Contributor, Organization, User


@admin.register(User)
class CleanroomUserAdmin(UserAdmin):
    list_display = ("username", "role", "organization", "is_active")
    list_filter = ("role",)
    fieldsets = (*(UserAdmin.fieldsets or ()), ("Role", {"fields": ("role", "organization")}))


admin.site.register(Organization)


@admin.register(Contributor)
class ContributorAdmin(admin.ModelAdmin):
    list_display = ("pk", "created_at")
    # The DID is personal data: listed nowhere, searchable by nobody.
    exclude = ("did",)
