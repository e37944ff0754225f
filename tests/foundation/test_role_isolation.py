"""Every API endpoint, on real objects: the allowed roles get 2xx with the object's
content; every other role gets 401/403/404 without it, and a refused write changes nothing.

Actors: Acme's business (``business``), Rival Corp's business (``other_business``), a
compliance officer, a contributor in the pool (``contributor``), a contributor with
nothing (``other_contributor``) and nobody (``anonymous``). Paths name real objects: a
dataset with a pool, a dataset open to Acme only, a released query of Acme, pending
queries, a trusted issuer, a settlement with a payout, a signed checkpoint. A case's
``own`` actors may use the endpoint for themselves (their own billing, their own /me/):
they get 2xx without the object's content. A last test makes sure no API route and
method is added without a case here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.test import APIClient

from tests.queries.conftest import POLICY, PRICE, SCHEMA, rows_for

ACTORS = (
    "business",
    "other_business",
    "compliance",
    "contributor",
    "other_contributor",
    "anonymous",
)
MEMBER_DID = "did:example:role-member"
MEMBER_ROW = {
    "age": 41,
    "region": "east",
    "income": 43210.98,
    "household_size": 2,
    "owns_home": False,
}
HOLDER = "Ada Role-Member"
IBAN = "DE89 3704 0044 0532 0130 00"
RELEASED_SQL = "SELECT COUNT(*) AS role_released_n FROM role_households"
ACME_TOPUP = "123.456789"


class World:
    """Real objects, each made the first time a case asks for it."""

    def __init__(self, users: dict[str, Any], settings: Any) -> None:
        self.users = users
        self.settings = settings

    @property
    def officer(self) -> Any:
        return self.users["compliance"]

    @property
    def acme(self) -> Any:
        return self.users["business"]

    @property
    def member(self) -> Any:
        return self.users["contributor"].contributor

    @cached_property
    def dataset(self) -> Any:
        """A dataset whose pool holds the member and five others; queries need review."""
        from cleanroom.accounts.services import contributor_get_or_create
        from cleanroom.datasets.services import consent_give, contribution_upload, dataset_create
        from payouts.services import topup_record

        dataset = dataset_create(
            actor=self.officer,
            slug="role_households",
            name="Role households",
            purpose="Role isolation",
            schema=SCHEMA,
            policy={**POLICY, "auto_approve": False},
            price=PRICE,
        )
        pool = [self.member] + [
            contributor_get_or_create(did=f"did:example:role-pool-{i}")[0] for i in range(5)
        ]
        for index, contributor in enumerate(pool):
            consent_give(contributor=contributor, dataset=dataset)
            records = [MEMBER_ROW] if index == 0 else rows_for(index)
            contribution_upload(contributor=contributor, dataset=dataset, records=records)
        topup_record(
            organization=self.acme.organization,
            amount=123_456_789,
            actor=self.acme,
            currency="EUR",
            reference="role-topup",
        )
        return dataset

    @cached_property
    def restricted(self) -> Any:
        """A dataset open to Acme only (no pool)."""
        from cleanroom.datasets.services import dataset_create

        return dataset_create(
            actor=self.officer,
            slug="role_private",
            name="Role private homes",
            purpose="Acme only",
            schema=SCHEMA,
            policy={**POLICY, "total_epsilon": "7.25", "allowed_organizations": ["Acme"]},
            price=PRICE,
        )

    def submitted(self, sql: str) -> Any:
        from cleanroom.queries.services import query_submit

        return query_submit(dataset=self.dataset.slug, sql=sql, epsilon="0.5", requester=self.acme)

    @cached_property
    def query(self) -> Any:
        """Acme's query, approved and released (run in-process)."""
        from cleanroom.queries.models import Query
        from cleanroom.queries.services import query_approve, query_execute

        query = self.submitted(RELEASED_SQL)
        query_approve(query_id=query.pk, reviewer=self.officer)
        query_execute(query_id=query.pk)
        query = Query.objects.get(pk=query.pk)
        assert query.status == "released", query.error
        return query

    @cached_property
    def pending(self) -> Any:
        return self.submitted("SELECT COUNT(*) AS role_pending_n FROM role_households")

    @cached_property
    def issuer(self) -> Any:
        from identity.services import trusted_issuer_create

        return trusted_issuer_create(
            did="did:example:role-issuer",
            name="Role Isolation Issuer",
            credential_types=["PersonhoodCredential"],
            actor=self.officer,
        )

    @cached_property
    def destination(self) -> Any:
        from payouts.services import payout_destination_set

        return payout_destination_set(contributor=self.member, holder_name=HOLDER, iban=IBAN)

    @cached_property
    def settlement(self) -> Any:
        from payouts.settlement import settlement_open, settlement_process

        assert self.query.pk
        opened = settlement_open(currency="EUR", actor=self.officer)
        assert opened is not None
        return settlement_process(settlement_id=opened.pk)

    @cached_property
    def payout(self) -> Any:
        from payouts.disbursement import payouts_create
        from payouts.models import Payout

        self.settings.CLEANROOM_PAYOUT_THRESHOLD_MICRO = 1
        assert self.destination is not None
        [pk] = payouts_create(settlement=self.settlement)
        return Payout.objects.get(pk=pk)

    @cached_property
    def checkpoint(self) -> Any:
        from audit.services import checkpoint_create

        assert self.dataset.pk  # a log with something in it
        checkpoint = checkpoint_create()
        assert checkpoint is not None
        return checkpoint


Marker = Callable[[World], str]


@dataclass(frozen=True)
class Case:
    method: str
    path: Callable[[World], str]
    allowed: frozenset[str]
    marker: Marker | None  # text only the allowed roles' answers contain (None: 204)
    own: frozenset[str] = frozenset()
    body: Callable[[World], dict[str, Any]] | None = None
    state: Callable[[World], Any] | None = None  # what a refused call must leave alone
    changes: bool = True  # the allowed call changes `state`
    status: int | None = None  # the allowed answer's exact status, when it matters
    skip: frozenset[str] = field(default_factory=frozenset)  # allowed, but not tried here
    needs: tuple[str, ...] = ()  # objects to make before any call
    label: str = ""  # tells apart two cases of one route and method

    @property
    def id(self) -> str:
        return f"{self.method} {self.route}" + (f" ({self.label})" if self.label else "")

    @property
    def route(self) -> str:
        return ROUTES[self.path]


ROUTES: dict[Callable[[World], str], str] = {}


def route(template: str, build: Callable[[World], str]) -> Callable[[World], str]:
    ROUTES[build] = template
    return build


def fixed(path: str) -> Callable[[World], str]:
    return route(path, lambda w: path)


B, OB, C, K, OK = "business", "other_business", "compliance", "contributor", "other_contributor"


def _count(model: str, **filters: Any) -> Callable[[World], int]:
    def count(w: World) -> int:
        from django.apps import apps

        return apps.get_model(model).objects.filter(**filters).count()

    return count


def _query_status(attr: str) -> Callable[[World], str]:
    def status(w: World) -> str:
        from cleanroom.queries.models import Query

        return str(Query.objects.get(pk=getattr(w, attr).pk).status)

    return status


def _issuer_state(w: World) -> Any:
    from identity.models import TrustedIssuer

    return list(TrustedIssuer.objects.filter(pk=w.issuer.pk).values_list("name", flat=True))


DATASET = route("/api/v1/datasets/<slug:slug>/", lambda w: f"/api/v1/datasets/{w.dataset.slug}/")
RESTRICTED = route(
    "/api/v1/datasets/<slug:slug>/", lambda w: f"/api/v1/datasets/{w.restricted.slug}/"
)
QUERY = route("/api/v1/queries/<int:pk>/", lambda w: f"/api/v1/queries/{w.query.pk}/")
ISSUER = route(
    "/api/v1/identity/trusted-issuers/<int:issuer_id>/",
    lambda w: f"/api/v1/identity/trusted-issuers/{w.issuer.pk}/",
)

CASES: list[Case] = [
    # ---- datasets
    Case(
        "get",
        fixed("/api/v1/datasets/"),
        frozenset({B, C, K, OK}),
        lambda w: w.restricted.name,
        own=frozenset({OB}),  # the catalog, without the dataset open to Acme only
    ),
    Case(
        "post",
        fixed("/api/v1/datasets/"),
        frozenset({C}),
        lambda w: "role_new_set",
        body=lambda w: {
            "slug": "role_new_set",
            "name": "Role new set",
            "purpose": "Published by compliance",
            "schema": SCHEMA,
            "policy": POLICY,
            "price": PRICE,
        },
        state=_count("datasets.Dataset", slug="role_new_set"),
        status=201,
    ),
    Case("get", DATASET, frozenset({B, OB, C, K, OK}), lambda w: w.dataset.name, label="open"),
    Case(
        "get",
        RESTRICTED,
        frozenset({B, C, K, OK}),
        lambda w: w.restricted.name,
        label="open to Acme only",
    ),
    Case(
        "patch",
        DATASET,
        frozenset({C}),
        lambda w: "Purpose rewritten by compliance",
        body=lambda w: {"purpose": "Purpose rewritten by compliance"},
        state=lambda w: type(w.dataset).objects.get(pk=w.dataset.pk).purpose,
    ),
    Case(
        "post",
        route(
            "/api/v1/datasets/<slug:slug>/consent/",
            lambda w: f"/api/v1/datasets/{w.restricted.slug}/consent/",
        ),
        frozenset({K}),
        lambda w: w.restricted.slug,
        skip=frozenset({OK}),
        state=_count("datasets.Consent", dataset__slug="role_private"),
        status=201,
    ),
    Case(
        "delete",
        route(
            "/api/v1/datasets/<slug:slug>/consent/",
            lambda w: f"/api/v1/datasets/{w.dataset.slug}/consent/",
        ),
        frozenset({K}),
        lambda w: '"withdrawn_at":"',  # a withdrawal time, not null
        state=_count("datasets.Consent", dataset__slug="role_households", withdrawn_at=None),
    ),
    Case(
        "post",
        route(
            "/api/v1/datasets/<slug:slug>/contributions/",
            lambda w: f"/api/v1/datasets/{w.dataset.slug}/contributions/",
        ),
        frozenset({K}),
        lambda w: '"accepted":1',
        body=lambda w: {"records": [MEMBER_ROW]},
        state=_count("datasets.Contribution"),
        status=201,
    ),
    Case("get", fixed("/api/v1/me/"), frozenset({K}), lambda w: MEMBER_DID, own=frozenset({OK})),
    Case(
        "get",
        fixed("/api/v1/me/export/"),
        frozenset({K}),
        lambda w: f'"income":{MEMBER_ROW["income"]}',
        own=frozenset({OK}),
        needs=("dataset",),
    ),
    Case(
        "delete",
        fixed("/api/v1/me/data/"),
        frozenset({K}),
        lambda w: '"requested_at"',
        skip=frozenset({OK}),
        state=_count("datasets.Erasure"),
        status=202,
    ),
    # ---- money of contributors
    Case(
        "get",
        fixed("/api/v1/me/earnings/"),
        frozenset({K}),
        lambda w: _member_balance(w),
        own=frozenset({OK}),
    ),
    Case(
        "get",
        fixed("/api/v1/me/payout-destination/"),
        frozenset({K}),
        lambda w: HOLDER,
        needs=("destination",),
    ),
    *[
        Case(
            method,
            fixed("/api/v1/me/payout-destination/"),
            frozenset({K}),
            lambda w: HOLDER,
            body=lambda w: {"holder_name": HOLDER, "iban": IBAN},
            skip=frozenset({OK}),
            state=_count("payouts.PayoutDestination"),
        )
        for method in ("put", "post")
    ],
    # ---- queries
    Case(
        "get",
        fixed("/api/v1/queries/"),
        frozenset({B, C}),
        lambda w: w.query.sql,
        own=frozenset({OB}),  # their own organization's queries: none
    ),
    Case(
        "post",
        fixed("/api/v1/queries/"),
        frozenset({B}),
        lambda w: "pending_approval",
        body=lambda w: {
            "dataset": w.dataset.slug,
            "sql": "SELECT COUNT(*) AS n FROM role_households",
            "epsilon": 0.5,
        },
        skip=frozenset({OB}),
        state=_count("queries.Query"),
        status=202,
    ),
    Case(
        "post",
        fixed("/api/v1/queries/preview/"),
        frozenset({B, OB}),
        lambda w: '"accuracy"',
        body=lambda w: {
            "dataset": w.dataset.slug,
            "sql": "SELECT COUNT(*) AS n FROM role_households",
            "epsilon": 0.5,
        },
        state=_count("queries.Query"),
        changes=False,
    ),
    Case("get", QUERY, frozenset({B, C}), lambda w: w.query.sql),
    Case(
        "get",
        route(
            "/api/v1/queries/<int:pk>/result/",
            lambda w: f"/api/v1/queries/{w.query.pk}/result/",
        ),
        frozenset({B, C}),
        lambda w: "role_released_n,role_released_n_low95",
    ),
    Case(
        "post",
        route(
            "/api/v1/queries/<int:pk>/approve/",
            lambda w: f"/api/v1/queries/{w.pending.pk}/approve/",
        ),
        frozenset({C}),
        lambda w: w.pending.sql,
        state=_query_status("pending"),
    ),
    Case(
        "post",
        route(
            "/api/v1/queries/<int:pk>/reject/",
            lambda w: f"/api/v1/queries/{w.pending.pk}/reject/",
        ),
        frozenset({C}),
        lambda w: w.pending.sql,
        body=lambda w: {"reason": "Role isolation says no"},
        state=_query_status("pending"),
    ),
    Case(
        "get",
        route(
            "/api/v1/queries/budget/<slug:slug>/",
            lambda w: f"/api/v1/queries/budget/{w.restricted.slug}/",
        ),
        frozenset({B, C}),
        lambda w: '"total_epsilon":7.25',
    ),
    # ---- identity
    Case(
        "get",
        fixed("/api/v1/identity/trusted-issuers/"),
        frozenset({C}),
        lambda w: w.issuer.name,
    ),
    Case(
        "post",
        fixed("/api/v1/identity/trusted-issuers/"),
        frozenset({C}),
        lambda w: "Role New Issuer",
        body=lambda w: {
            "did": "did:example:role-new-issuer",
            "name": "Role New Issuer",
            "credential_types": ["PersonhoodCredential"],
        },
        state=_count("identity.TrustedIssuer"),
        status=201,
    ),
    Case("get", ISSUER, frozenset({C}), lambda w: w.issuer.did),
    Case(
        "put",
        ISSUER,
        frozenset({C}),
        lambda w: "Role Issuer Renamed",
        body=lambda w: {
            "name": "Role Issuer Renamed",
            "credential_types": ["PersonhoodCredential"],
        },
        state=_issuer_state,
    ),
    Case("delete", ISSUER, frozenset({C}), None, state=_issuer_state, status=204),
    # ---- money of businesses and compliance
    Case(
        "get",
        fixed("/api/v1/billing/"),
        frozenset({B}),
        lambda w: ACME_TOPUP,
        own=frozenset({OB}),
        needs=("dataset",),
    ),
    Case(
        "post",
        fixed("/api/v1/billing/top-ups/"),
        frozenset({B}),
        lambda w: "7.654321",
        body=lambda w: {"amount": "7.654321", "reference": "role-isolation-top-up"},
        skip=frozenset({OB}),
        state=_count("payouts.JournalEntry", kind="top_up"),
        status=201,
    ),
    Case(
        "get",
        fixed("/api/v1/payouts/"),
        frozenset({C}),
        lambda w: f'"id":{w.payout.pk},"settlement":{w.settlement.pk}',
    ),
    Case(
        "get",
        fixed("/api/v1/payouts/distributions/"),
        frozenset({C}),
        lambda w: f'"query":{w.query.pk},"dataset":"{w.dataset.slug}"',
    ),
    Case(
        "get",
        fixed("/api/v1/payouts/settlements/"),
        frozenset({C}),
        lambda w: w.settlement.merkle_root,
    ),
    Case(
        "post",
        fixed("/api/v1/payouts/settlements/"),
        frozenset({C}),
        lambda w: '"queued":true',
        status=202,
    ),
    Case(
        "get",
        route(
            "/api/v1/payouts/settlements/<int:pk>/",
            lambda w: f"/api/v1/payouts/settlements/{w.settlement.pk}/",
        ),
        frozenset({C}),
        lambda w: w.settlement.merkle_root,
    ),
    Case(
        "get",
        fixed("/api/v1/payouts/reconciliation/"),
        frozenset({C}),
        lambda w: '"problems":[]',
        needs=("query",),
    ),
    # ---- audit
    Case(
        "get",
        fixed("/api/v1/audit/events/"),
        frozenset({C}),
        lambda w: f"dataset:{w.restricted.slug}",
    ),
    # The report's own fields (its head moves: each refused call is audited, see
    # cleanroom/refusals.py, so the head read before the denied calls is stale after).
    Case("get", fixed("/api/v1/audit/verify/"), frozenset({C}), lambda w: '"unsigned_tail":'),
    Case(
        "get",
        fixed("/api/v1/audit/export/"),
        frozenset({C}),
        lambda w: f"dataset:{w.restricted.slug}",
    ),
    Case("get", fixed("/api/v1/audit/checkpoints/"), frozenset({C}), lambda w: w.checkpoint.root),
    Case(
        "post",
        fixed("/api/v1/audit/checkpoints/"),
        frozenset({C}),
        lambda w: '"tree_size"',
        needs=("restricted",),
        state=_count("audit.AuditCheckpoint"),
        status=201,
    ),
    Case(
        "get",
        route(
            "/api/v1/audit/proofs/inclusion/",
            lambda w: f"/api/v1/audit/proofs/inclusion/?seq={w.checkpoint.tree_size}",
        ),
        frozenset({C}),
        lambda w: w.checkpoint.root,
    ),
    Case(
        "get",
        route(
            "/api/v1/audit/proofs/consistency/",
            lambda w: f"/api/v1/audit/proofs/consistency/?first={w.checkpoint.tree_size}",
        ),
        frozenset({C}),
        lambda w: w.checkpoint.root,
    ),
]


def _member_balance(w: World) -> str:
    from payouts.selectors import contributor_earnings

    assert w.query.pk
    balance = str(contributor_earnings(contributor=w.member)["balance"])
    assert balance != "0.000000"
    return f'"balance":"{balance}"'


# Open by design: sign-in, the wallet protocol, the audit public key, payment-provider
# webhooks (authenticated by their signature), the schema.
PUBLIC: set[tuple[str, str]] = {
    ("post", "/api/v1/auth/token/"),
    ("post", "/api/v1/identity/presentation-requests/"),
    ("get", "/api/v1/identity/presentation-requests/<str:request_id>/"),
    ("post", "/api/v1/identity/presentation-requests/<str:request_id>/response/"),
    ("get", "/api/v1/audit/public-key/"),
    ("post", "/api/v1/payouts/webhooks/<slug:provider>/"),
    ("get", "/api/v1/schema/"),
}


@pytest.fixture
def world(
    settings: Any,
    business_user: Any,
    other_business_user: Any,
    compliance_user: Any,
    make_contributor: Any,
) -> World:
    users = {
        "business": business_user,
        "other_business": other_business_user,
        "compliance": compliance_user,
        "contributor": make_contributor(MEMBER_DID).user,
        "other_contributor": make_contributor("did:example:role-stranger").user,
        "anonymous": None,
    }
    return World(users, settings)


@pytest.fixture(scope="module")
def client() -> APIClient:
    """One client for the module: a new one loads the middleware again (~40 ms each)."""
    return APIClient()


def _call(client: APIClient, user: Any, method: str, path: str, body: dict[str, Any] | None) -> Any:
    from cleanroom.accounts.services import token_for

    if user is None:
        client.credentials()
    else:
        client.credentials(HTTP_AUTHORIZATION=f"Token {token_for(user=user)}")
    return getattr(client, method)(path, body or {}, format="json")


def _text(response: Any) -> str:
    if getattr(response, "streaming", False):
        return b"".join(response.streaming_content).decode()
    return response.content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_allowed_roles_get_the_object_and_no_other_role_does(
    client: APIClient, world: World, case: Case
) -> None:
    _check(client, world, case)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("view", "route"),
    [
        ("cleanroom.queries.api.DatasetBudgetApi", "/api/v1/queries/budget/<slug:slug>/"),
        ("payouts.api.BillingApi", "/api/v1/billing/"),
    ],
)
def test_the_matrix_fails_when_a_permission_class_is_dropped(
    client: APIClient, world: World, monkeypatch: pytest.MonkeyPatch, view: str, route: str
) -> None:
    """The test of the test: with one view's permission classes gone, its case fails."""
    import importlib

    from rest_framework.permissions import AllowAny

    module, name = view.rsplit(".", 1)
    monkeypatch.setattr(
        getattr(importlib.import_module(module), name), "permission_classes", [AllowAny]
    )
    (case,) = [c for c in CASES if c.route == route and c.method == "get"]
    with pytest.raises(AssertionError):
        _check(client, world, case)


def _check(client: APIClient, world: World, case: Case) -> None:
    for name in case.needs:
        getattr(world, name)
    path = case.path(world)
    body = case.body(world) if case.body else None
    marker = case.marker(world) if case.marker else None
    before = case.state(world) if case.state else None
    denied = [a for a in ACTORS if a not in case.allowed | case.own | case.skip]
    assert denied, case.id
    for actor in denied:
        response = _call(client, world.users[actor], case.method, path, body)
        assert response.status_code in (401, 403, 404), (actor, response.status_code)
        problem = response.json()
        assert set(problem) >= {"type", "title", "detail", "errors"}, actor
        if marker:
            assert marker not in _text(response), actor
        if case.state:
            assert case.state(world) == before, f"{actor} changed something"

    for actor in sorted(case.own):
        response = _call(client, world.users[actor], case.method, path, body)
        assert 200 <= response.status_code < 300, (actor, response.status_code)
        assert marker and marker not in _text(response), actor

    for actor in sorted(case.allowed - case.skip):
        response = _call(client, world.users[actor], case.method, path, body)
        expected = case.status or 200
        assert response.status_code == expected, (actor, response.status_code, _text(response))
        if marker:
            assert marker in _text(response), actor
    if case.state and case.changes:
        assert case.state(world) != before, "the allowed write changed nothing"


def _api_routes(resolver: URLResolver, prefix: str = "") -> list[tuple[str, Any]]:
    routes: list[tuple[str, Any]] = []
    for pattern in resolver.url_patterns:
        if isinstance(pattern, URLResolver):
            routes.extend(_api_routes(pattern, prefix + str(pattern.pattern)))
        elif isinstance(pattern, URLPattern):
            routes.append((prefix + str(pattern.pattern), pattern.callback))
    return [(r, callback) for r, callback in routes if r.startswith("api/v1/")]


def test_every_api_route_and_method_has_a_case() -> None:
    served: set[tuple[str, str]] = set()
    for template, callback in _api_routes(get_resolver()):
        view = getattr(callback, "cls", None) or getattr(callback, "view_class", None)
        assert view is not None, template
        for method in view.http_method_names:
            if method not in ("head", "options", "trace") and hasattr(view, method):
                served.add((method, "/" + template))
    covered = {(case.method, case.route) for case in CASES}
    assert sorted(served - covered - PUBLIC) == []
    assert sorted(covered - served) == []  # no case for a route or method that is gone
