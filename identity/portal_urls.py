"""Portal pages of identity. NAV lists (roles, label, url name) for the role-aware navigation."""

from django.urls import URLPattern, URLResolver

app_name = "identity"
urlpatterns: list[URLPattern | URLResolver] = []
NAV: list[tuple[tuple[str, ...], str, str]] = []
