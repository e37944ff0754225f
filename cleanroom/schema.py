"""OpenAPI generation: our views nest `InputSerializer`/`OutputSerializer` classes, so
components are named after the view that owns them (`QueryPreviewApiOutput`) instead of
colliding as `Output`; and every operation documents the problem-details answers any
request can get (cleanroom/errors.py), so the schema lists every status the service sends."""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from rest_framework import serializers

# Status codes any operation may answer with a problem-details body: bad input (400), no or a
# bad token (401), wrong role (403), an object that is not there or not yours (404), a method
# the path does not take (405), a state that forbids it (409), a body over the limit (413),
# an unsupported media type (415), too many attempts (429).
PROBLEM_STATUSES = {
    "400": "Bad request: the input is refused; detail names the problem and nothing changed.",
    "401": "Not authenticated: no token, or an unknown one.",
    "403": "Forbidden: the caller's role may not do this.",
    "404": "Not found (objects of another organization or contributor answer 404 too).",
    "405": "Method not allowed on this path.",
    "409": "Conflict: the object's state does not allow this now.",
    "413": "Payload too large.",
    "415": "Unsupported media type.",
    "429": "Too many attempts: retry after the Retry-After header's seconds.",
}
PROBLEM_MEDIA_TYPES = ("application/problem+json", "application/json")


class ProblemSerializer(serializers.Serializer):
    """Every 4xx body (RFC 9457 problem details)."""

    type = serializers.CharField(help_text="a stable code, e.g. validation-failed")
    title = serializers.CharField()
    detail = serializers.CharField(help_text="what was wrong, in plain words")
    errors = serializers.ListField(  # type: ignore[assignment]
        child=serializers.JSONField(), help_text="per field or row: {field|row, message}"
    )

    class Meta:
        ref_name = "Problem"


class AutoSchema(SpectacularAutoSchema):
    def _get_serializer_name(self, serializer: Any, direction: str, *args: Any) -> str:
        name = super()._get_serializer_name(serializer, direction, *args)
        qualname = type(serializer).__qualname__
        if "." in qualname:
            owner = qualname.split(".")[-2]
            if not name.startswith(owner):
                name = owner + name
        return name

    def _get_response_bodies(self, direction: Any = "response") -> Any:
        responses = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        problem = self.resolve_serializer(ProblemSerializer, "response").ref
        for status, description in PROBLEM_STATUSES.items():
            # A view's own answer for the status (e.g. a refused presentation) stays; the
            # problem-details body is added beside it.
            entry = responses.setdefault(status, {"description": description, "content": {}})
            content = entry.setdefault("content", {})
            for media_type in PROBLEM_MEDIA_TYPES:
                content.setdefault(media_type, {"schema": problem})
        return responses
