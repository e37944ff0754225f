"""``Idempotency-Key`` on writes that move money, budget or data (API.md "Retries").

A client that lost the answer to an upload, a top-up or a query submission (a reset
connection, a killed web process) sends the same request again with the same key:

- same user, key and request (method, path, body): the first answer is replayed, same
  status and body, with ``Idempotent-Replayed: true``, and nothing is done twice;
- same key, another request: 409, nothing done;
- no key: the request runs as always.

The key is claimed and the answer stored in one transaction with the write itself, so
either both are committed or neither; a failed first attempt (any 4xx) stores nothing and
a retry runs afresh. Only 2xx answers are replayed.

`idempotent` also declares the header on the operation in the OpenAPI schema, so a view
cannot honour the key without documenting it (tests/foundation/test_schema_idempotency_key.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.db import transaction
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from cleanroom.accounts.models import User
from cleanroom.accounts.services import idempotency_claim, idempotency_store
from cleanroom.errors import ValidationFailed

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255

KEY_PARAMETER = OpenApiParameter(
    name=HEADER,
    location=OpenApiParameter.HEADER,
    required=False,
    # What _key() accepts: 1 to 255 printable ASCII characters (space to tilde).
    type={"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH, "pattern": "^[ -~]+$"},
    description=(
        "Optional key (e.g. a UUID) that makes a retry of this write safe. A repeat by the "
        "same user with the same key and the same request (method, path, content type and "
        "body) does nothing again and replays the first 2xx answer: the same status and the "
        f"same documented body, with the response header `{REPLAYED_HEADER}: true`. The same "
        "key with a different request answers 409 (problem details, type `conflict`) and "
        "changes nothing. A first attempt that was refused (4xx) keeps nothing, so its retry "
        f"runs afresh. 1 to {MAX_KEY_LENGTH} printable ASCII characters; any other value "
        "answers 400 (validation-failed). Without the header the request runs as always."
    ),
)
REPLAYED_PARAMETER = OpenApiParameter(
    name=REPLAYED_HEADER,
    location=OpenApiParameter.HEADER,
    response=list(range(200, 300)),  # only 2xx answers are stored and replayed
    type={"type": "string", "enum": ["true"]},
    description=f"Present on a replayed answer to a repeated {HEADER}.",
)


def _key(request: Request) -> str | None:
    key = request.headers.get(HEADER)
    if key is None:
        return None
    if not 1 <= len(key) <= MAX_KEY_LENGTH or not (key.isascii() and key.isprintable()):
        raise ValidationFailed(
            f"{HEADER} must be 1 to {MAX_KEY_LENGTH} printable ASCII characters.",
            errors=[
                {"field": HEADER, "message": f"1 to {MAX_KEY_LENGTH} printable ASCII characters"}
            ],
        )
    return key


def _fingerprint(request: Request) -> str:
    digest = hashlib.sha256()
    digest.update(f"{request.method}\0{request.path}\0{request.content_type}\0".encode())
    digest.update(request._request.body)  # bounded by CLEANROOM_MAX_REQUEST_BYTES
    return digest.hexdigest()


def idempotent(handler: Callable[..., Response]) -> Callable[..., Response]:
    """Decorate an APIView's post(): replay by `Idempotency-Key` (see module doc), and
    declare the header on the operation's schema."""

    @wraps(handler)
    def wrapped(view: Any, request: Request, *args: Any, **kwargs: Any) -> Response:
        key = _key(request)
        if key is None:
            return handler(view, request, *args, **kwargs)
        fingerprint = _fingerprint(request)
        user = request.user
        assert isinstance(user, User)  # the view's permission classes ran first
        with transaction.atomic():
            stored = idempotency_claim(user=user, key=key, fingerprint=fingerprint)
            if stored is not None:
                return Response(
                    stored.body, status=stored.status, headers={REPLAYED_HEADER: "true"}
                )
            response = handler(view, request, *args, **kwargs)
            if 200 <= response.status_code < 300:
                idempotency_store(
                    user=user, key=key, status=response.status_code, body=response.data
                )
            else:
                transaction.set_rollback(True)
        return response

    # Added to whatever the view's own @extend_schema declares (either order of decorators).
    return extend_schema(parameters=[KEY_PARAMETER, REPLAYED_PARAMETER])(wrapped)
