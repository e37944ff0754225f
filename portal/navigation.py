"""Role-aware navigation: each app's `portal_urls.NAV` lists (roles, label, url name).

A role with more than ``FLAT_UP_TO`` pages (compliance has twelve) sees them in a few
named groups (menus), so the bar stays on one line; a group of one is a plain link.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse

from cleanroom.urls import PORTAL_MODULES

FLAT_UP_TO = 6
# Group of each page, by URL name prefix (first match); unlisted pages stand alone.
GROUPS: list[tuple[str, str]] = [
    ("datasets:", "Datasets"),
    ("queries:", "Queries"),
    ("payouts:", "Money"),
    ("audit:", "Audit"),
    ("identity:", "Audit"),
]


def _grouped(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """[{label, url, active} | {label, children: [...], active}] in first-seen order."""
    out: list[dict[str, Any]] = []
    by_label: dict[str, dict[str, Any]] = {}
    for item in items:
        label = next((g for prefix, g in GROUPS if item["name"].startswith(prefix)), None)
        if label is None:
            out.append(item)
            continue
        group = by_label.get(label)
        if group is None:
            group = by_label[label] = {"label": label, "children": [], "active": False}
            out.append(group)
        group["children"].append(item)
        group["active"] = group["active"] or item["active"]
    return [g["children"][0] if "children" in g and len(g["children"]) == 1 else g for g in out]


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
                        {
                            "label": label,
                            "url": url,
                            "name": url_name,
                            "active": request.path.startswith(url),
                        }
                    )
    grouped = _grouped(items) if len(items) > FLAT_UP_TO else items
    return {"nav_items": grouped, "user_role": role}
