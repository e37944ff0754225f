"""OpenAPI generation: our views nest `InputSerializer`/`OutputSerializer` classes, so
components are named after the view that owns them (`QueryPreviewApiOutput`) instead of
colliding as `Output`."""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema


class AutoSchema(SpectacularAutoSchema):
    def _get_serializer_name(self, serializer: Any, direction: str, *args: Any) -> str:
        name = super()._get_serializer_name(serializer, direction, *args)
        qualname = type(serializer).__qualname__
        if "." in qualname:
            owner = qualname.split(".")[-2]
            if not name.startswith(owner):
                name = owner + name
        return name
