"""Portal pages of audit. NAV lists (roles, label, url name) for the role-aware navigation."""

from django.urls import URLPattern, URLResolver

app_name = "audit"
urlpatterns: list[URLPattern | URLResolver] = []
NAV: list[tuple[tuple[str, ...], str, str]] = []
