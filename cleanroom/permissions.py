"""Permission classes per role, used by every API view."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission
from rest_framework.request import Request


class _HasRole(BasePermission):
    role = ""
    message = "This endpoint is not available to your role."

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and getattr(user, "role", None) == self.role)


class IsBusiness(_HasRole):
    role = "business"
    message = "Only business accounts may do this."


class IsCompliance(_HasRole):
    role = "compliance"
    message = "Only compliance officers may do this."


class IsContributor(_HasRole):
    role = "contributor"
    message = "Only contributors may do this."


class IsBusinessOrCompliance(BasePermission):
    message = "Only business accounts and compliance officers may do this."

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        return bool(
            user
            and user.is_authenticated
            and getattr(user, "role", None) in ("business", "compliance")
        )


class ReadAnyWriteCompliance(BasePermission):
    """Any signed-in role reads; only compliance writes (e.g. the dataset catalog)."""

    message = "Only compliance officers may change this."

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        if request.method in ("GET", "HEAD", "OPTIONS"):
            return True
        return getattr(user, "role", None) == "compliance"
