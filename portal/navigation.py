"""Role-aware navigation: each app's `portal_urls.NAV` lists (roles, label, url name)."""

from __future__ import annotations

from importlib import import_module
from typing import Any

from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse

from cleanroom.urls import PORTAL_MODULES


def navigation(request: HttpRequest) -> dict[str, Any]:
    user = getattr(request, "user", None)
    role = getattr(user, "role", None) if user and user.is_authenticated else None
    items = []
    if role:
        for module_name in PORTAL_MODULES:
            module = import_module(module_name)
            for roles, label, url_name in getattr(module, "NAV", []):
                if role in roles:
                    try:
                        url = reverse(url_name)
                    except NoReverseMatch:
                        continue
                    items.append(
                        {"label": label, "url": url, "active": request.path.startswith(url)}
                    )
    return {"nav_items": items, "user_role": role}
