"""Every portal page on the demo world: who may open it, and, in Chromium, how it holds up.

One ``seed_demo`` world (a small synthetic population: the pools pass their minimum) and
real objects from it: a released query of each business, the commutes query waiting for
review, an audit entry, a settlement, a trusted issuer, a wallet sign-in waiting. Then:

- **Role matrix**: every portal URL (pages, htmx fragments, downloads and exports) for
  anonymous, a contributor, the business that owns the object (Acme), another business
  (Globex) and compliance. The allowed role gets 200 and sees the content (a marker);
  every other gets a redirect to sign-in (or, signed in, to its own home), 403 or 404, and
  never the marker: not in the answer, not on the page a redirect lands on.
- **Every URL has a row**: the URLconf is walked (the API, the admin and /healthz aside:
  tests/foundation/test_role_isolation.py has the API's matrix), and each route has a row
  in ``pages()`` or is a POST-only action in ``POST_ONLY``, whose GET answers 405.
- **POST actions**: every state-changing form post, refused for every role it is not for
  (with a valid CSRF token, so the refusal is the role check's): sign-in for anonymous,
  403/404/405 for the others, and the database as it was, with no task queued.
- **The test of the test**: with one view's role check (or object check) removed, the
  matrices report it.
- **Quality, at 1366 px and 390 px wide**, for every allowed (role, HTML page): no
  horizontal overflow, axe-core (vendored, ``portal/static/vendor/axe-core``) finds no
  serious or critical violation, no console error, and no request leaves the server's
  origin. The API docs pages are third-party UIs: checked for the network and the console,
  not by axe.

The matrices ask through Django's test client (the same middleware and views as the live
server, CSRF enforced) on one world shared by the ``TestRoleMatrix`` class: seeded once in
a transaction that is rolled back when the class is done, each test in a savepoint of its
own. The Chromium tests need the live server, so they seed a committed world of their own.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from django.db import transaction
from django.test import Client, TestCase, override_settings
from django.urls import URLPattern, URLResolver, get_resolver, resolve

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROLES = ("anonymous", "contributor", "acme", "globex", "compliance")
WIDTHS = (1366, 390)
AXE = "/static/vendor/axe-core/axe.min.js"
SIGN_IN = "/sign-in/"
# Where "/" sends each signed-in role: a refused role may be sent there, and nowhere else.
HOME = {"contributor": "/my-data/", "acme": "/", "globex": "/", "compliance": "/"}
# Not portal pages: the API (its own matrix), the admin, static files, the health check.
NOT_PORTAL = ("api/", "admin/", "static/", "healthz")
JOIN_SESSION_KEY = "identity_join_requests"  # where /join/ keeps the sign-ins it started

PAGE, FRAGMENT, DOWNLOAD, REDIRECT = "page", "fragment", "download", "redirect"


@dataclass
class Page:
    path: str
    allowed: tuple[str, ...]
    marker: str  # text only an allowed role may see
    axe: bool = True
    # PAGE: a whole HTML page (also checked in Chromium); FRAGMENT: htmx swaps it into a
    # page; DOWNLOAD: a file (read to its end); REDIRECT: the allowed role is sent on (302)
    # to a page that shows the marker.
    kind: str = PAGE
    # An allowed role shown another page at the same address, and that page's marker.
    marker_of: dict[str, str] = field(default_factory=dict)

    @property
    def markers(self) -> list[str]:
        return [self.marker, *self.marker_of.values()]


@dataclass
class Action:
    """A form post, and the database state a refused post must leave alone (all but the
    cost preview and the policy dry run change something when allowed)."""

    path: str
    allowed: tuple[str, ...]
    data: dict[str, Any]
    state: Callable[[], Any]  # read from the database before and after each refused post
    marker: str = ""  # what a refused role must not see either
    label: str = ""
    # An allowed role whose post is cheap and changes nothing: it gets 200 and the marker
    # (which also shows the CSRF token is good, so the refusals are the role check's).
    tried_by: str = ""

    @property
    def id(self) -> str:
        return f"POST {self.path}" + (f" ({self.label})" if self.label else "")


def _seed() -> None:
    with open("/dev/null", "w") as quiet:
        call_command("seed_demo", stdout=quiet, stderr=quiet)


def _demo_objects() -> dict[str, Any]:
    """The real objects the rows name, read back from the seeded demo."""
    from audit.models import AuditEvent
    from cleanroom.accounts.models import Contributor, User
    from cleanroom.queries import demo as queries_demo
    from cleanroom.queries.models import Query
    from identity.models import TrustedIssuer
    from identity.services import presentation_request_create
    from payouts.models import Settlement

    acme_query = Query.objects.get(sql=queries_demo.README_HOUSEHOLDS)
    wallet_contributor = (
        Contributor.objects.exclude(user__username__startswith="demo-population-")
        .order_by("pk")
        .first()
    )
    assert wallet_contributor is not None
    event = AuditEvent.objects.filter(subject=f"query:{acme_query.pk}").order_by("seq").first()
    settlement = Settlement.objects.exclude(merkle_root="").order_by("pk").first()
    issuer = TrustedIssuer.objects.order_by("pk").first()
    assert event is not None and settlement is not None and issuer is not None
    return {
        "users": {
            "contributor": wallet_contributor.user,
            "acme": User.objects.get(username="acme"),
            "globex": User.objects.get(username="globex"),
            "compliance": User.objects.get(username="compliance"),
        },
        "contributor": wallet_contributor,
        "acme_query": acme_query,
        "globex_query": Query.objects.get(organization__name="Globex Research"),
        "pending": Query.objects.get(status="pending_approval"),
        "event": event,
        "settlement": settlement,
        "issuer": issuer,
        # A wallet sign-in started by the anonymous visitor (``clients`` puts it in that
        # session, as /join/ does): only that browser may poll its status.
        "join_request": str(presentation_request_create().pk),
    }


@pytest.fixture
def demo(live_server: Any, settings: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The demo world (150 synthetic contributors), committed for the live server."""
    settings.VAR_DIR = tmp_path
    settings.ALLOWED_HOSTS = ["*"]
    monkeypatch.setenv("CLEANROOM_DEMO_POPULATION", "150")
    _seed()
    return _demo_objects()


def pages(demo: dict[str, Any]) -> list[Page]:
    acme, globex, pending = demo["acme_query"], demo["globex_query"], demo["pending"]
    everyone = ("contributor", "acme", "globex", "compliance")
    business_or_compliance = ("acme", "globex", "compliance")
    return [
        # A business's or compliance's overview, or the introduction for anonymous; a
        # contributor's home is their data (a redirect to /my-data/).
        Page(
            "/",
            ("anonymous", "acme", "globex", "compliance"),
            "Recent queries",
            marker_of={"anonymous": "pays the people whose data it is"},
        ),
        Page("/sign-in/", ROLES, "Sign in"),
        Page("/join/", ROLES, "Join with your wallet"),
        # Only the browser that started a wallet sign-in may poll it (the others: 404).
        Page(
            f"/join/{demo['join_request']}/status/",
            ("anonymous",),
            "Waiting for your wallet",
            kind=FRAGMENT,
        ),
        # The demo issuer's published keys and status list: for wallets and verifiers.
        Page("/.well-known/jwt-vc-issuer/demo-issuer", ROLES, '"jwks"', kind=DOWNLOAD),
        Page("/demo-issuer/status-list", ROLES, "eyJ", kind=DOWNLOAD),  # a JWT
        Page("/api-reference/redoc.js", ROLES, "redoc.standalone.js", kind=DOWNLOAD),
        Page("/datasets/", everyone, "Household budgets"),
        Page("/datasets/households/", everyone, "Household budgets"),
        Page("/datasets/households/policy/", ("compliance",), "Review the changes"),
        Page("/datasets/new/", ("compliance",), "Publish a dataset"),
        Page("/my-data/", ("contributor",), "Your rights"),
        Page(
            "/my-data/export/",
            ("contributor",),
            f'"did":"{demo["contributor"].did}"',
            kind=DOWNLOAD,
        ),
        Page("/earnings/", ("contributor",), "When and how you are paid"),
        Page("/queries/", business_or_compliance, "queries"),
        Page("/queries/new/", ("acme", "globex"), "New query"),
        Page(f"/queries/{acme.pk}/", ("acme", "compliance"), acme.sql.split(" FROM")[0]),
        Page(f"/queries/{globex.pk}/", ("globex", "compliance"), "WHERE age &gt;= 65"),
        Page(f"/queries/{pending.pk}/", ("acme", "compliance"), "GROUP BY mode"),
        # The status fragment htmx polls, and the released results' downloads.
        Page(
            f"/queries/{acme.pk}/status/",
            ("acme", "compliance"),
            "Progress of the query",
            kind=FRAGMENT,
        ),
        Page(
            f"/queries/{globex.pk}/status/",
            ("globex", "compliance"),
            "Progress of the query",
            kind=FRAGMENT,
        ),
        Page(
            f"/queries/{acme.pk}/download.csv",
            ("acme", "compliance"),
            "region,n,n_low95,n_high95,mean_income,mean_income_low95",
            kind=DOWNLOAD,
        ),
        Page(
            f"/queries/{acme.pk}/download.json",
            ("acme", "compliance"),
            '"columns":["region","n","mean_income"]',
            kind=DOWNLOAD,
        ),
        Page(
            f"/queries/{globex.pk}/download.csv",
            ("globex", "compliance"),
            "n,n_low95,n_high95\r\n",
            kind=DOWNLOAD,
        ),
        Page("/queries/review/", ("compliance",), f"Query {pending.pk}"),
        Page("/queries/budget/households/", ("compliance",), "households"),
        Page("/billing/", ("acme", "globex"), "Balance"),
        Page("/money/distributions/", ("compliance",), "Distributions"),
        Page("/money/settlements/", ("compliance",), "could not be paid"),
        # The table the settlements page refreshes (htmx) while a settlement runs.
        Page(
            "/money/settlements/?partial=1",
            ("compliance",),
            demo["settlement"].merkle_root[:16],
            kind=FRAGMENT,
        ),
        Page("/money/payouts/", ("compliance",), "Payouts"),
        Page("/money/reconciliation/", ("compliance",), "Reconciliation"),
        Page("/compliance/trusted-issuers/", ("compliance",), "Trusted issuers"),
        Page("/audit/", ("compliance",), "Newest first"),
        Page(f"/audit/events/{demo['event'].seq}/", ("compliance",), "Inclusion proof"),
        # The look-up form on the audit pages sends compliance on to the query's story.
        Page(f"/audit/queries/?query={acme.pk}", ("compliance",), "Who ran it", kind=REDIRECT),
        Page(f"/audit/queries/{acme.pk}/", ("compliance",), "Who ran it"),
        Page("/audit/budget/", ("compliance",), "Budget use"),
        Page("/audit/credentials/", ("compliance",), "Credential checks"),
        Page("/audit/verify/", ("compliance",), "The log verifies."),
        # The exports: an entry's hash is in each of them.
        Page("/audit/export.csv", ("compliance",), demo["event"].hash, kind=DOWNLOAD),
        Page("/audit/export.jsonl", ("compliance",), demo["event"].hash, kind=DOWNLOAD),
        Page("/audit/export/log.jsonl", ("compliance",), demo["event"].hash, kind=DOWNLOAD),
        Page("/audit/public-key.pem", ("compliance",), "BEGIN PUBLIC KEY", kind=DOWNLOAD),
        Page("/api/docs/", ROLES, "swagger-ui", axe=False),
        Page("/api/redoc/", ROLES, "redoc", axe=False),
    ]


# Routes that answer POST only: their GET is 405 (after the role check: sign-in for
# anonymous, 403 for another role). Each has an action in ``post_actions`` but sign-out.
POST_ONLY: dict[str, str] = {
    "sign-out/": "signs the browser out, which a GET (a prefetched link) must not do",
    "queries/preview/": "the cost preview of the SQL a form sends; nothing to show without it",
    "queries/<int:pk>/approve/": "compliance approves a query waiting for review",
    "queries/<int:pk>/reject/": "compliance rejects a query waiting for review",
    "datasets/<slug:slug>/consent/": "a contributor consents to a dataset's terms",
    "datasets/<slug:slug>/withdraw/": "a contributor withdraws their consent",
    "datasets/<slug:slug>/upload/": "a contributor uploads rows",
    "my-data/erase/": "a contributor has their data erased",
    "compliance/trusted-issuers/<int:issuer_id>/remove/": "compliance stops trusting an issuer",
}
SIGN_OUT = "/sign-out/"


def _count(model: str, **filters: Any) -> Callable[[], int]:
    def count() -> int:
        from django.apps import apps

        return int(apps.get_model(model).objects.filter(**filters).count())

    return count


def post_actions(demo: dict[str, Any]) -> list[Action]:
    from cleanroom.datasets.models import Dataset
    from cleanroom.datasets.portal import POLICY_FIELDS, PRICE_FIELDS, _shown
    from cleanroom.queries.models import Query
    from identity.models import TrustedIssuer
    from payouts.models import PayoutDestination

    pending, issuer = demo["pending"], demo["issuer"]

    def pending_status() -> str:
        return str(Query.objects.get(pk=pending.pk).status)

    def households() -> Any:
        dataset = Dataset.objects.get(slug="households")
        return (dataset.policy, dataset.price, dataset.terms_version, dataset.purpose)

    def trusted() -> list[Any]:
        return list(TrustedIssuer.objects.order_by("pk").values_list("pk", "did"))

    def destinations() -> list[Any]:
        return list(PayoutDestination.objects.order_by("pk").values())

    ask = {
        "dataset": "commutes",
        "sql": "SELECT mode, COUNT(*) AS n FROM commutes GROUP BY mode",
        "epsilon": "0.5",
    }
    # The policy editor's form as the page fills it in, with one cap lowered.
    dataset = Dataset.objects.get(slug="households")
    policy_form = {f"policy.{key}": _shown(dataset.policy.get(key)) for key, _, _ in POLICY_FIELDS}
    policy_form |= {f"price.{key}": str(dataset.price.get(key, "")) for key, _ in PRICE_FIELDS}
    policy_form |= {"retention_days": str(dataset.retention_days), "purpose": dataset.purpose}
    policy_form |= {"step": "review", "policy.max_query_epsilon": "0.25"}
    return [
        Action(f"/queries/{pending.pk}/approve/", ("compliance",), {"reason": ""}, pending_status),
        Action(
            f"/queries/{pending.pk}/reject/",
            ("compliance",),
            {"reason": "The matrix says no"},
            pending_status,
        ),
        Action("/queries/new/", ("acme", "globex"), ask, _count("queries.Query")),
        Action(
            "/queries/preview/",
            ("acme", "globex"),
            ask,
            _count("queries.Query"),
            marker="Expected relative error",
            tried_by="acme",
        ),
        Action(
            "/datasets/households/consent/",
            ("contributor",),
            {"privacy_cap": "1"},
            _count("datasets.Consent"),
        ),
        Action(
            "/datasets/households/withdraw/",
            ("contributor",),
            {},
            _count("datasets.Consent", dataset__slug="households", withdrawn_at=None),
        ),
        Action(
            "/datasets/households/upload/",
            ("contributor",),
            {
                "records": json.dumps(
                    [
                        {
                            "age": 40,
                            "region": "east",
                            "income": 1000,
                            "household_size": 2,
                            "visits": 1,
                            "owns_home": False,
                        }
                    ]
                )
            },
            _count("datasets.Contribution"),
        ),
        Action(
            "/my-data/erase/", ("contributor",), {"confirm": "erase"}, _count("datasets.Erasure")
        ),
        Action(
            "/datasets/households/policy/",
            ("compliance",),
            policy_form,
            households,
            marker='id="policy-review"',
            label="dry run",
            tried_by="compliance",
        ),
        Action(
            "/datasets/households/policy/",
            ("compliance",),
            {"step": "apply", "changes": json.dumps({"policy": {"max_query_epsilon": "0.25"}})},
            households,
            label="apply",
        ),
        Action(
            "/datasets/new/",
            ("compliance",),
            {
                "slug": "matrix_new",
                "name": "Matrix new",
                "purpose": "Published by a refused role",
                "schema": json.dumps(
                    {"columns": [{"name": "age", "type": "integer", "lower": 0, "upper": 99}]}
                ),
            },
            _count("datasets.Dataset"),
        ),
        Action(
            "/compliance/trusted-issuers/",
            ("compliance",),
            {
                "did": "did:example:matrix-issuer",
                "name": "Matrix Issuer",
                "credential_types": "PersonhoodCredential",
            },
            trusted,
        ),
        Action(f"/compliance/trusted-issuers/{issuer.pk}/remove/", ("compliance",), {}, trusted),
        Action(
            "/billing/",
            ("acme", "globex"),
            {"amount": "100", "reference": "matrix-top-up"},
            _count("payouts.JournalEntry"),
        ),
        Action(
            "/earnings/",
            ("contributor",),
            {"holder_name": "Matrix Holder", "iban": "DE89 3704 0044 0532 0130 00"},
            destinations,
        ),
        Action(
            "/money/settlements/",
            ("compliance",),
            {},
            _count("payouts.Settlement"),
            label="run a settlement",
        ),
    ]


def _text(response: Any) -> str:
    if getattr(response, "streaming", False):
        return b"".join(response.streaming_content).decode(errors="replace")
    return bytes(response.content).decode(errors="replace")


def _refusal_problems(
    client: Client, role: str, what: str, response: Any, markers: list[str], *, post: bool
) -> list[str]:
    """What is wrong with one refused answer: sign-in for anonymous; 403 or 404 (405 for a
    post) or, for a GET, a redirect to the role's own home; never a marker, not even on
    the page a redirect lands on."""
    markers = [m for m in markers if m]
    problems = []
    status, location = response.status_code, response.get("Location", "")
    if role == "anonymous":
        expected = status == 302 and location.startswith(SIGN_IN)
    elif post:
        expected = status in (403, 404, 405)
    else:
        expected = status in (403, 404) or (
            status == 302 and (location.startswith(SIGN_IN) or location == HOME[role])
        )
    if not expected:
        problems.append(f"{role} {what}: {status} {location}".rstrip())
    if any(marker in _text(response) for marker in markers):
        problems.append(f"{role} {what}: {status} shows it")
    if status == 302:
        landing = _text(client.get(location))
        if any(marker in landing for marker in markers):
            problems.append(f"{role} {what}: the page it redirects to ({location}) shows it")
    return problems


def get_matrix_problems(clients: dict[str, Client], rows: list[Page]) -> list[str]:
    problems = []
    for page in rows:
        for role in ROLES:
            client = clients[role]
            response = client.get(page.path)
            if role not in page.allowed:
                problems.extend(
                    _refusal_problems(client, role, page.path, response, page.markers, post=False)
                )
                continue
            if page.kind == REDIRECT and response.status_code == 302:
                response = client.get(response["Location"])
            marker = page.marker_of.get(role, page.marker)
            if response.status_code != 200 or marker not in _text(response):
                problems.append(f"{role} {page.path}: {response.status_code}, marker missing")
    return problems


def post_matrix_problems(clients: dict[str, Client], actions: list[Action]) -> list[str]:
    """Every role an action is not for: refused, nothing changed, no task queued."""
    problems = []
    tokens = {role: _csrf_token(clients[role]) for role in ROLES}
    for action in actions:
        for role in [r for r in ROLES if r not in action.allowed] + [action.tried_by]:
            if not role:
                continue
            before = action.state()
            with TestCase.captureOnCommitCallbacks() as queued:
                response = clients[role].post(
                    action.path, {**action.data, "csrfmiddlewaretoken": tokens[role]}
                )
            if action.state() != before:
                problems.append(f"{role} {action.id}: changed the database")
            if queued:
                problems.append(f"{role} {action.id}: queued {len(queued)} task(s)")
            if role == action.tried_by:
                if response.status_code != 200 or action.marker not in _text(response):
                    problems.append(f"{role} {action.id}: {response.status_code}, marker missing")
                continue
            problems.extend(
                _refusal_problems(
                    clients[role], role, action.id, response, [action.marker], post=True
                )
            )
    return problems


def _csrf_token(client: Client) -> str:
    """The CSRF token of this browser, read from a form it was shown (the sign-in form)."""
    found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', _text(client.get(SIGN_IN)))
    assert found is not None, "no CSRF token on the sign-in page"
    return found.group(1)


def _patterns(patterns: list[Any] | None = None, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(route, URLPattern) of every view in the URLconf, walked through its includes."""
    for pattern in get_resolver().url_patterns if patterns is None else patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            yield from _patterns(pattern.url_patterns, route)
        elif isinstance(pattern, URLPattern):
            yield route, pattern


def portal_routes() -> set[str]:
    """Every route of the URLconf but the API's, the admin's, static files and /healthz."""
    return {route for route, _ in _patterns() if not route.startswith(NOT_PORTAL)}


def route_of(path: str) -> str:
    return str(resolve(urlsplit(path).path).route)


def _view_of(route: str) -> URLPattern:
    (found,) = [pattern for r, pattern in _patterns() if r == route]
    return found


def _unguarded(callback: Any) -> Any:
    """A portal view as written under its ``@roles``: no role check (a test of the test)."""
    assert hasattr(callback, "allowed_roles"), callback
    return callback.__wrapped__.__wrapped__  # login_required's wrapper, then the role check


@pytest.fixture(scope="class")
def world(
    django_db_setup: Any, django_db_blocker: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """The demo world of the matrices: seeded once for the class, in a transaction rolled
    back when the class is done (each test takes ``db``: a savepoint of its own)."""
    with (
        django_db_blocker.unblock(),
        override_settings(
            VAR_DIR=tmp_path_factory.mktemp("role-matrix"),
            PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
            CACHES={
                "default": {
                    "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
                    "LOCATION": "role-matrix",
                }
            },
        ),
        pytest.MonkeyPatch.context() as monkeypatch,
        transaction.atomic(),
    ):
        monkeypatch.setenv("CLEANROOM_DEMO_POPULATION", "150")
        _seed()
        yield _demo_objects()
        transaction.set_rollback(True)


@pytest.fixture
def clients(world: dict[str, Any], db: Any) -> dict[str, Client]:
    """A browser per role (CSRF enforced), signed in but anonymous; the anonymous one
    started the wallet sign-in ``join_request`` (its session holds it, as /join/ leaves it)."""
    made = {}
    for role in ROLES:
        client = Client(enforce_csrf_checks=True, raise_request_exception=False)
        if role == "anonymous":
            session = client.session
            session[JOIN_SESSION_KEY] = [world["join_request"]]
            session.save()
        else:
            client.force_login(world["users"][role])
        made[role] = client
    return made


class TestRoleMatrix:
    def test_role_matrix_on_every_page(
        self, clients: dict[str, Client], world: dict[str, Any]
    ) -> None:
        problems = get_matrix_problems(clients, pages(world))
        assert problems == [], json.dumps(problems, indent=1)

    def test_every_portal_url_has_a_row_or_is_a_post_only_action(
        self, clients: dict[str, Client], world: dict[str, Any]
    ) -> None:
        served = portal_routes()
        rows = {route_of(p.path) for p in pages(world) if not p.path.startswith("/api/")}
        assert sorted(served - rows - POST_ONLY.keys()) == []  # a URL without a row
        assert sorted((rows | POST_ONLY.keys()) - served) == []  # a row of a URL that is gone
        assert sorted(rows & POST_ONLY.keys()) == []  # a GET row: not POST-only

        # A POST-only route is so: its GET is 405 for the roles it is for (after the role
        # check: anonymous is sent to sign in, another role gets 403).
        actions = {route_of(a.path): a for a in post_actions(world)}
        problems = []
        for route in POST_ONLY:
            if route == route_of(SIGN_OUT):
                path, allowed = SIGN_OUT, ROLES
            else:
                assert route in actions, f"{route}: no action in post_actions"
                path, allowed = actions[route].path, actions[route].allowed
            for role in ROLES:
                response = clients[role].get(path)
                status, location = response.status_code, response.get("Location", "")
                if role in allowed:
                    expected = status == 405
                elif role == "anonymous":
                    expected = status == 302 and location.startswith(SIGN_IN)
                else:
                    expected = status in (403, 405)
                if not expected:
                    problems.append(f"{role} GET {path}: {status} {location}".rstrip())
        assert problems == [], json.dumps(problems, indent=1)

    def test_refused_posts_change_nothing(
        self, clients: dict[str, Client], world: dict[str, Any]
    ) -> None:
        actions = post_actions(world)
        assert sorted({route_of(a.path) for a in actions} - portal_routes()) == []
        problems = post_matrix_problems(clients, actions)
        assert problems == [], json.dumps(problems, indent=1)

    # ---- the test of the test: a check removed, the matrices say so

    @pytest.mark.parametrize(
        "route",
        ["audit/export.csv", "queries/<int:pk>/download.<str:kind>", "my-data/export/"],
    )
    def test_the_page_matrix_fails_without_a_role_check(
        self,
        clients: dict[str, Client],
        world: dict[str, Any],
        monkeypatch: pytest.MonkeyPatch,
        route: str,
    ) -> None:
        pattern = _view_of(route)
        monkeypatch.setattr(pattern, "callback", _unguarded(pattern.callback))
        rows = [page for page in pages(world) if route_of(page.path) == route]
        assert rows
        problems = get_matrix_problems(clients, rows)
        assert any(problem.startswith("anonymous ") for problem in problems), problems

    def test_the_page_matrix_fails_without_the_organization_check(
        self, clients: dict[str, Client], world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from cleanroom.queries import selectors
        from cleanroom.queries.models import Query

        monkeypatch.setattr(selectors, "query_get", lambda *, user, pk: Query.objects.get(pk=pk))
        path = f"/queries/{world['acme_query'].pk}/download.csv"
        problems = get_matrix_problems(clients, [p for p in pages(world) if p.path == path])
        assert problems == [f"globex {path}: 200", f"globex {path}: 200 shows it"]

    def test_the_post_matrix_fails_when_another_role_may_post(
        self, clients: dict[str, Client], world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from portal.access import roles

        route = "compliance/trusted-issuers/<int:issuer_id>/remove/"
        pattern = _view_of(route)
        widened = roles("compliance", "business")(_unguarded(pattern.callback))
        monkeypatch.setattr(pattern, "callback", widened)
        (action,) = [a for a in post_actions(world) if route_of(a.path) == route]
        problems = post_matrix_problems(clients, [action])
        assert f"acme {action.id}: changed the database" in problems, problems


def _cookie(user: Any) -> str:
    client = Client()
    client.force_login(user)
    return str(client.cookies[django_settings.SESSION_COOKIE_NAME].value)


@pytest.fixture
def contexts(browser: Any, live_server: Any, demo: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """One browser context per role, signed in (contributors sign in with a wallet: the
    session is what counts)."""
    made = {}
    for role in ROLES:
        context = browser.new_context(base_url=live_server.url)
        if role != "anonymous":
            context.add_cookies(
                [
                    {
                        "name": django_settings.SESSION_COOKIE_NAME,
                        "value": _cookie(demo["users"][role]),
                        "url": live_server.url,
                    }
                ]
            )
        made[role] = context
    yield made
    for context in made.values():
        context.close()


def _check(page: Any, path: str, *, axe: bool, origin: str) -> list[str]:
    """Overflow, axe, console and network problems of one page as it is."""
    problems = []
    width = page.evaluate("document.documentElement.scrollWidth")
    viewport = page.evaluate("window.innerWidth")
    if width > viewport:
        wide = page.evaluate(
            """() => [...document.querySelectorAll('body *')]
                .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)
                .slice(0, 3).map(e => e.tagName + '.' + e.className + '#' + e.id)"""
        )
        problems.append(f"{path} @{viewport}: {width} px wide ({wide})")
    if axe:
        page.add_script_tag(url=origin + AXE)
        found = page.evaluate(
            """async () => (await axe.run(document)).violations
                .filter(v => ['serious', 'critical'].includes(v.impact))
                .map(v => v.id + ': ' + v.nodes.slice(0, 2).map(n => n.target.join(' ')).join(' | '))"""
        )
        problems.extend(f"{path} @{viewport} axe {v}" for v in found)
    return problems


def _listen(page: Any, errors: list[str], origin: str) -> None:
    """Console errors, uncaught exceptions and any request to another origin."""

    def console(message: Any) -> None:
        if message.type == "error":
            errors.append(message.text)

    def request(sent: Any) -> None:
        if not sent.url.startswith((origin, "data:", "blob:", "about:")):
            errors.append(f"network: {sent.url}")

    page.on("console", console)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("request", request)


def test_every_page_fits_passes_axe_and_stays_offline_without_console_errors(
    contexts: dict[str, Any], demo: dict[str, Any], live_server: Any
) -> None:
    problems: list[str] = []
    for role in ROLES:
        browser_page = contexts[role].new_page()
        browser_page.set_default_timeout(20_000)
        errors: list[str] = []
        _listen(browser_page, errors, live_server.url)
        for page in pages(demo):
            if page.kind != PAGE or role not in page.allowed:
                continue  # fragments and downloads are not pages a browser shows
            if role != "compliance" and page.path.startswith("/api/"):
                continue  # the docs once, as compliance
            for width in WIDTHS:
                browser_page.set_viewport_size({"width": width, "height": 900})
                errors.clear()
                response = browser_page.goto(page.path, wait_until="networkidle")
                assert response is not None and response.status == 200, (role, page.path)
                problems.extend(
                    f"{role} {p}"
                    for p in _check(browser_page, page.path, axe=page.axe, origin=live_server.url)
                )
                problems.extend(f"{role} {page.path} @{width}: {e}" for e in errors)
        browser_page.close()
    assert problems == [], json.dumps(problems, indent=1)


def test_three_journeys_on_the_demo(
    browser: Any, live_server: Any, demo: dict[str, Any], contexts: dict[str, Any]
) -> None:
    """A business asks, compliance reviews and tightens a policy, a contributor withdraws:
    through the pages, in Chromium, on the demo world."""
    from cleanroom.datasets.models import Dataset
    from cleanroom.datasets.selectors import pool_size
    from cleanroom.queries.models import Query
    from tests.conftest import sign_in

    # Business: signs in with its password, lands on its overview, asks of commutes.
    business = browser.new_context(base_url=live_server.url).new_page()
    business.set_default_timeout(20_000)
    sign_in(business, "acme", "acme-demo-pass")
    assert "€" in business.inner_text("#overview-balance")
    business.goto("/queries/new/")
    business.select_option("select[name=dataset]", "commutes")
    business.wait_for_url("**/queries/new/?dataset=commutes")
    sql = business.input_value("textarea[name=sql]")
    assert "FROM commutes" in sql and "income" not in sql
    business.click("text=Preview cost and accuracy")
    business.wait_for_selector("#preview table")
    assert "Expected relative error" in business.inner_text("#preview")
    business.click("button[type=submit]")
    business.wait_for_selector(".status-pending_approval")
    asked = Query.objects.order_by("-pk").first()
    assert asked is not None and asked.status == "pending_approval"
    assert asked.sql.replace("\r\n", "\n") == sql  # a form sends CRLF line ends

    # Compliance: approves it from the review queue, then lowers a cap in the policy editor.
    officer = browser.new_context(base_url=live_server.url).new_page()
    officer.set_default_timeout(20_000)
    sign_in(officer, "compliance", "compliance-demo-pass")
    officer.goto("/queries/review/")
    officer.locator(f"form[action='/queries/{asked.pk}/approve/'] button").click()
    officer.wait_for_selector(f"text=Query {asked.pk} approved and queued.")
    asked.refresh_from_db()
    assert asked.status in ("queued", "running", "released")
    households = Dataset.objects.get(slug="households")
    pool = pool_size(dataset=households)
    officer.goto("/datasets/households/policy/")
    officer.fill("input[name='policy.max_query_epsilon']", "0.5")
    officer.click("text=Review the changes")
    review = officer.inner_text("#policy-review")
    assert "policy.max_query_epsilon" in review and "no new consent" in review
    officer.click("text=Apply")
    officer.wait_for_selector("text=Every contributor stays in the pool.")
    households.refresh_from_db()
    assert households.policy["max_query_epsilon"] == "0.5"
    assert pool_size(dataset=households) == pool

    # Contributor: withdraws behind the confirmation; the catalog then says so.
    person = contexts["contributor"].new_page()
    person.goto("/datasets/households/")
    person.click("#withdraw summary")
    assert "no query of Household budgets sees your rows" in person.inner_text("#withdraw")
    person.click("text=Yes, withdraw my consent")
    person.wait_for_selector("text=Consent withdrawn")
    person.goto("/datasets/")
    assert "withdrawn" in person.inner_text("table")
