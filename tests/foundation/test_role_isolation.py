"""Every role is denied on every other role's endpoint: 401/403/404, never 2xx.

The matrix lists each endpoint with the roles allowed on it; a second test makes
sure no API view is added without an entry here.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

ROLES = ("business", "compliance", "contributor", "anonymous")

# (method, path, allowed roles). Paths use ids/slugs that need not exist: a denial
# must come before any lookup, and an allowed role may get 404 for a missing object.
MATRIX: list[tuple[str, str, set[str]]] = [
    ("post", "/api/v1/datasets/", {"compliance"}),
    ("patch", "/api/v1/datasets/some-data/", {"compliance"}),
    ("post", "/api/v1/datasets/some-data/consent/", {"contributor"}),
    ("delete", "/api/v1/datasets/some-data/consent/", {"contributor"}),
    ("post", "/api/v1/datasets/some-data/contributions/", {"contributor"}),
    ("get", "/api/v1/me/", {"contributor"}),
    ("get", "/api/v1/me/export/", {"contributor"}),
    ("delete", "/api/v1/me/data/", {"contributor"}),
    ("get", "/api/v1/me/earnings/", {"contributor"}),
    ("get", "/api/v1/me/payout-destination/", {"contributor"}),
    ("post", "/api/v1/queries/", {"business"}),
    ("post", "/api/v1/queries/preview/", {"business"}),
    ("get", "/api/v1/queries/1/", {"business", "compliance"}),
    ("get", "/api/v1/queries/1/result/", {"business", "compliance"}),
    ("post", "/api/v1/queries/1/approve/", {"compliance"}),
    ("post", "/api/v1/queries/1/reject/", {"compliance"}),
    ("get", "/api/v1/queries/budget/some-data/", {"business", "compliance"}),
    ("get", "/api/v1/identity/trusted-issuers/", {"compliance"}),
    ("post", "/api/v1/identity/trusted-issuers/", {"compliance"}),
    ("delete", "/api/v1/identity/trusted-issuers/1/", {"compliance"}),
    ("get", "/api/v1/billing/", {"business"}),
    ("post", "/api/v1/billing/top-ups/", {"business"}),
    ("get", "/api/v1/payouts/", {"compliance"}),
    ("get", "/api/v1/payouts/distributions/", {"compliance"}),
    ("get", "/api/v1/payouts/settlements/", {"compliance"}),
    ("post", "/api/v1/payouts/settlements/", {"compliance"}),
    ("get", "/api/v1/payouts/settlements/1/", {"compliance"}),
    ("get", "/api/v1/payouts/reconciliation/", {"compliance"}),
    ("get", "/api/v1/audit/events/", {"compliance"}),
    ("get", "/api/v1/audit/verify/", {"compliance"}),
    ("get", "/api/v1/audit/export/", {"compliance"}),
    ("get", "/api/v1/audit/checkpoints/", {"compliance"}),
    ("post", "/api/v1/audit/checkpoints/", {"compliance"}),
    ("get", "/api/v1/audit/proofs/inclusion/", {"compliance"}),
    ("get", "/api/v1/audit/proofs/consistency/", {"compliance"}),
]

# Open by design: sign-in, the wallet protocol, the catalog for any signed-in role,
# the audit public key, payment-provider webhooks (authenticated by signature), the schema.
PUBLIC_OR_SHARED = {
    "api/v1/auth/token/",
    "api/v1/identity/presentation-requests/",
    "api/v1/identity/presentation-requests/<str:request_id>/",
    "api/v1/identity/presentation-requests/<str:request_id>/response/",
    "api/v1/datasets/",
    "api/v1/datasets/<slug:slug>/",
    "api/v1/queries/",
    "api/v1/audit/public-key/",
    "api/v1/payouts/webhooks/<slug:provider>/",
    "api/v1/schema/",
}


@pytest.fixture
def clients(api: Any, business_user: Any, compliance_user: Any, contributor: Any) -> dict[str, Any]:
    return {
        "business": api(business_user),
        "compliance": api(compliance_user),
        "contributor": api(contributor.user),
        "anonymous": api(None),
    }


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("method", "path", "allowed"), MATRIX, ids=[f"{m} {p}" for m, p, _ in MATRIX]
)
def test_other_roles_are_denied(
    clients: dict[str, Any], method: str, path: str, allowed: set[str]
) -> None:
    for role in ROLES:
        if role in allowed:
            continue
        response = getattr(clients[role], method)(path, {}, format="json")
        assert response.status_code in (401, 403, 404), (
            f"{role} got {response.status_code} on {method} {path}"
        )
        assert set(response.json()) >= {"type", "title", "detail", "errors"}


@pytest.mark.django_db
def test_contributor_sees_no_business_queries(clients: dict[str, Any]) -> None:
    response = clients["contributor"].get("/api/v1/queries/")
    assert response.status_code in (403, 404) or response.json() in ([], {"results": []})


def _api_routes(resolver: URLResolver, prefix: str = "") -> list[str]:
    routes: list[str] = []
    for pattern in resolver.url_patterns:
        if isinstance(pattern, URLResolver):
            routes.extend(_api_routes(pattern, prefix + str(pattern.pattern)))
        elif isinstance(pattern, URLPattern):
            routes.append(prefix + str(pattern.pattern))
    return [r for r in routes if r.startswith("api/v1/")]


def test_every_api_route_is_in_the_matrix() -> None:
    def normalize(path: str) -> str:
        return path.replace("some-data", "<slug:slug>").replace("/1/", "/<int:pk>/")

    covered = {normalize(path).lstrip("/") for _, path, _ in MATRIX}
    covered |= {c.replace("<int:pk>", "<int:issuer_id>") for c in covered}
    missing = [
        route for route in _api_routes(get_resolver()) if route not in covered | PUBLIC_OR_SHARED
    ]
    assert missing == []
