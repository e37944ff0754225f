"""Hand-made hostile inputs, fed to every endpoint that takes them: only 4xx may come back.

A schema fuzzer (tests/foundation/test_schema_fuzz.py) does not build these shapes, so they
are listed by hand (issue 11, defect 4): JSON nested 1,000 deep, SQL with 50 nested
parentheses or 200 NOTs, a CSV integer of 4,301 digits, a policy whose rows per contributor
times max contributors overflows OpenDP's u32, a price of 1e400, numbers beyond bigint in
paging parameters and ids. Each case runs against real objects (a dataset with a pool, a
query, a contributor who consented) so the request reaches the code that parses it.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import pytest
from django.db import transaction
from django.test import Client
from rest_framework.test import APIClient

from tests.conftest import api_client_for
from tests.queries.conftest import pool_dataset  # noqa: F401  (the fixture)

DEEP_ARRAY = "[" * 1000 + "]" * 1000
DEEP_OBJECT = '{"a":' * 1000 + "1" + "}" * 1000
DEEP_JSON_BODIES = {
    "array": DEEP_ARRAY,
    "object": DEEP_OBJECT,
    # Deep inside a field of an otherwise well-formed body (JSON-typed fields take any value).
    "in-field": '{"schema":'
    + DEEP_ARRAY
    + ',"policy":'
    + DEEP_ARRAY
    + ',"sql":"x","vp_token":'
    + DEEP_OBJECT
    + ',"records":'
    + DEEP_ARRAY
    + "}",
    # Shallow enough for Python's parser: what the code does next must not recurse either.
    "900-deep": '{"schema":'
    + "[" * 900
    + "]" * 900
    + ',"records":'
    + "[" * 900
    + "]" * 900
    + ',"privacy_cap":'
    + '{"a":' * 900
    + "1"
    + "}" * 900
    + "}",
}
HUGE = "9" * 30  # beyond bigint
NESTED_SQL = "SELECT COUNT(*) AS n FROM households WHERE " + "(" * 50 + "age > 30" + ")" * 50  # noqa: S608
NOT_SQL = "SELECT COUNT(*) AS n FROM households WHERE " + "NOT " * 200 + "age > 30"
DEEP_SELECT_SQL = "SELECT " + "(" * 300 + "COUNT(*)" + ")" * 300 + " AS n FROM households"
LONG_INTEGER = "1" * 4301
COMPARE = "SELECT COUNT(*) AS n FROM households WHERE age > "
PLUS_SQL = COMPARE + "+".join(["1"] * 3000)
LONG_LITERAL_SQL = COMPARE + LONG_INTEGER
HOSTILE_SQL = [NESTED_SQL, NOT_SQL, DEEP_SELECT_SQL, PLUS_SQL, LONG_LITERAL_SQL]
# Operations that take no body: a body is ignored (2xx), and never parsed into a 500.
BODYLESS = ("/presentation-requests/ ", "/audit/checkpoints/ ", "/payouts/settlements/ ")


@pytest.fixture
def world(
    pool_dataset: Any,  # noqa: F811
    business_user: Any,
    compliance_user: Any,
    make_contributor: Any,
    settings: Any,
    tmp_path: Any,
) -> Any:
    """A households dataset with a pool, a pending query, a consented contributor, an issuer."""
    from cleanroom.datasets.services import consent_give
    from cleanroom.queries.services import query_submit
    from identity.services import presentation_request_create, trusted_issuer_create

    settings.MEDIA_ROOT = tmp_path / "media"
    dataset = pool_dataset(policy={"auto_approve": False})
    query = query_submit(
        dataset=dataset.slug,
        sql="SELECT COUNT(*) AS n FROM households",
        epsilon="0.5",
        requester=business_user,
    )
    contributor = make_contributor("did:example:hostile")
    consent_give(contributor=contributor, dataset=dataset)
    issuer = trusted_issuer_create(
        actor=compliance_user,
        did="did:example:issuer",
        name="Issuer",
        credential_types=["PersonhoodCredential"],
    )
    return {
        "dataset": dataset,
        "query": query,
        "contributor": contributor,
        "issuer": issuer,
        "presentation": presentation_request_create(),
        "business": business_user,
        "compliance": compliance_user,
    }


def _clients(world: Any) -> dict[str, APIClient]:
    clients = {
        "anonymous": APIClient(),
        "business": api_client_for(world["business"]),
        "compliance": api_client_for(world["compliance"]),
        "contributor": api_client_for(world["contributor"].user),
    }
    for client in clients.values():
        client.raise_request_exception = False
    return clients


def _portal(user: Any) -> Client:
    client = Client(raise_request_exception=False)
    client.force_login(user)
    return client


class Seen(list[tuple[str, Any]]):
    """Responses by description; each request runs in its own savepoint, so a database error
    in one (the 500 being looked for) does not abort the test's transaction for the next."""

    def send(self, what: str, call: Callable[[], Any]) -> Any:
        savepoint = transaction.savepoint()
        response = call()
        if response.status_code >= 500:
            transaction.savepoint_rollback(savepoint)
        else:
            transaction.savepoint_commit(savepoint)
        self.append((what, response))
        return response

    def not_4xx(self) -> str:
        """What answered other than a 4xx (a body-less operation may also answer 2xx)."""
        return "\n".join(
            f"{what} -> {response.status_code}"
            for what, response in self
            if not 400 <= response.status_code < 500
            and not (response.status_code < 300 and any(path in what for path in BODYLESS))
        )


def _json_writes(world: Any) -> list[tuple[str, str, str]]:
    """(role, method, path) of every API operation that reads a JSON body."""
    slug = world["dataset"].slug
    query = world["query"].pk
    issuer = world["issuer"].pk
    return [
        ("anonymous", "post", "/api/v1/auth/token/"),
        ("anonymous", "post", "/api/v1/identity/presentation-requests/"),
        ("anonymous", "post", "/api/v1/payouts/webhooks/fake_bank/"),
        ("compliance", "post", "/api/v1/datasets/"),
        ("compliance", "patch", f"/api/v1/datasets/{slug}/"),
        ("compliance", "post", f"/api/v1/queries/{query}/approve/"),
        ("compliance", "post", f"/api/v1/queries/{query}/reject/"),
        ("compliance", "post", "/api/v1/identity/trusted-issuers/"),
        ("compliance", "put", f"/api/v1/identity/trusted-issuers/{issuer}/"),
        ("compliance", "post", "/api/v1/audit/checkpoints/"),
        ("compliance", "post", "/api/v1/payouts/settlements/"),
        ("business", "post", "/api/v1/queries/preview/"),
        ("business", "post", "/api/v1/queries/"),
        ("business", "post", "/api/v1/billing/top-ups/"),
        ("contributor", "post", f"/api/v1/datasets/{slug}/consent/"),
        ("contributor", "post", f"/api/v1/datasets/{slug}/contributions/"),
        ("contributor", "post", "/api/v1/me/payout-destination/"),
        ("contributor", "put", "/api/v1/me/payout-destination/"),
    ]


@pytest.mark.django_db
def test_json_nested_1000_deep_is_a_4xx_on_every_json_endpoint(world: Any) -> None:
    clients = _clients(world)
    seen = Seen()
    for role, method, path in _json_writes(world):
        for name, body in DEEP_JSON_BODIES.items():
            client = getattr(clients[role], method)
            seen.send(
                f"{method.upper()} {path} ({role}, {name})",
                lambda client=client, path=path, body=body: client(
                    path, body, content_type="application/json"
                ),
            )
    assert not seen.not_4xx(), seen.not_4xx()
    # The refusal names the problem.
    token = [r for what, r in seen if "auth/token/ (anonymous, array)" in what][0]
    assert token.json()["type"] == "parse_error"
    assert "nested" in token.json()["detail"]


@pytest.mark.django_db
def test_presentation_response_nested_1000_deep_is_a_4xx(world: Any) -> None:
    anonymous = _clients(world)["anonymous"]
    path = f"/api/v1/identity/presentation-requests/{world['presentation'].pk}/response/"
    seen = Seen()
    for name, body in DEEP_JSON_BODIES.items():
        seen.send(
            f"POST {path} ({name})",
            lambda body=body: anonymous.post(path, body, content_type="application/json"),
        )
        seen.send(
            f"POST {path} form ({name})",
            lambda body=body: anonymous.post(
                path,
                urlencode({"vp_token": body}),
                content_type="application/x-www-form-urlencoded",
            ),
        )
    assert not seen.not_4xx(), seen.not_4xx()


@pytest.mark.django_db
def test_json_nested_1000_deep_in_portal_forms_is_a_4xx(world: Any) -> None:
    compliance = _portal(world["compliance"])
    contributor = _portal(world["contributor"].user)
    form = {
        "slug": "deep",
        "name": "Deep",
        "purpose": "p",
        "total_epsilon": "1",
        "max_query_epsilon": "1",
        "min_contributors": "5",
        "max_rows_per_contributor": "3",
        "currency": "EUR",
        "per_query": "1",
        "per_epsilon": "1",
        "platform_fee": "0.2",
        "retention_days": "30",
    }
    seen = Seen()
    for name, body in DEEP_JSON_BODIES.items():
        seen.send(
            f"portal new dataset ({name})",
            lambda body=body: compliance.post("/datasets/new/", {**form, "schema": body}),
        )
        seen.send(
            f"portal upload records ({name})",
            lambda body=body: contributor.post(
                f"/datasets/{world['dataset'].slug}/upload/", {"records": body}
            ),
        )
    assert not seen.not_4xx(), seen.not_4xx()


@pytest.mark.django_db
def test_deeply_nested_sql_is_refused_not_a_500(world: Any) -> None:
    from tests.queries.conftest import budget_state

    dataset = world["dataset"]
    before = budget_state(dataset)
    business = _clients(world)["business"]
    portal = _portal(world["business"])
    seen = Seen()
    for sql in HOSTILE_SQL:
        body = {"dataset": dataset.slug, "sql": sql, "epsilon": "0.5"}
        seen.send(
            f"preview {sql[:60]}",
            lambda body=body: business.post("/api/v1/queries/preview/", body, format="json"),
        )
        seen.send(
            f"submit {sql[:60]}",
            lambda body=body: business.post("/api/v1/queries/", body, format="json"),
        )
        seen.send(
            f"portal preview {sql[:60]}", lambda body=body: portal.post("/queries/preview/", body)
        )
        seen.send(f"portal submit {sql[:60]}", lambda body=body: portal.post("/queries/new/", body))
    assert not seen.not_4xx(), seen.not_4xx()
    refused = [r.json() for what, r in seen if what.startswith(("preview", "submit"))]
    assert all(r["type"] == "query-refused" for r in refused), refused
    assert "nested" in refused[0]["detail"], refused[0]
    assert budget_state(dataset) == before


@pytest.mark.django_db
def test_out_of_range_numbers_in_uploads_are_row_errors(world: Any) -> None:
    from cleanroom.datasets.models import Contribution

    dataset = world["dataset"]
    before = Contribution.objects.filter(dataset=dataset).count()
    contributor = _clients(world)["contributor"]
    portal = _portal(world["contributor"].user)
    path = f"/api/v1/datasets/{dataset.slug}/contributions/"
    header = "age,region,income,household_size,owns_home\n"
    rows = [
        f"{LONG_INTEGER},north,100,2,true\n",
        f"30,north,{LONG_INTEGER},2,true\n",
        f"30,north,{'9' * 400},2,true\n",
        "30,north,1e400,2,true\n",
        f"30,north,100,{'9' * 25},true\n",
        "\u0663\u0660,north,100,2,true\n",  # Arabic-Indic digits: thirty
        "30,north,\u0661\u0660\u0660,2,true\n",
    ]
    seen = Seen()

    def csv_file(row: str) -> io.BytesIO:
        upload = io.BytesIO((header + row).encode())
        upload.name = "rows.csv"
        return upload

    for row in rows:
        seen.send(
            f"api csv {row[:40]}",
            lambda row=row: contributor.post(path, {"file": csv_file(row)}, format="multipart"),
        )
        seen.send(
            f"portal csv {row[:40]}",
            lambda row=row: portal.post(
                f"/datasets/{dataset.slug}/upload/", {"file": csv_file(row)}
            ),
        )
    for value in (int("9" * 300), 10**30, "\u0663\u0660", 1e308, -1e308):
        record = {"age": value, "region": "north", "income": 100, "household_size": 2}
        seen.send(
            f"api json age={str(value)[:20]}",
            lambda record=record: contributor.post(
                path, {"records": [{**record, "owns_home": True}]}, format="json"
            ),
        )
        seen.send(
            f"api json income={str(value)[:20]}",
            lambda value=value: contributor.post(
                path,
                {
                    "records": [
                        {
                            "age": 30,
                            "region": "north",
                            "income": value,
                            "household_size": 2,
                            "owns_home": True,
                        }
                    ]
                },
                format="json",
            ),
        )
    # 4,301 digits is beyond what Python parses from JSON: a 400 at the parser.
    raw = (
        '{"records":[{"age":'
        + LONG_INTEGER
        + ',"region":"north","income":1,"household_size":2,"owns_home":true}]}'
    )
    seen.send(
        "api json 4301 digits", lambda: contributor.post(path, raw, content_type="application/json")
    )
    assert not seen.not_4xx(), seen.not_4xx()
    for what, response in seen:
        if what.startswith("api csv") or what.startswith("api json age"):
            assert response.status_code == 400, what
            assert response.json()["errors"], what
    assert Contribution.objects.filter(dataset=dataset).count() == before


@pytest.mark.django_db
def test_numbers_out_of_range_in_bodies_are_4xx(world: Any) -> None:
    from tests.datasets.conftest import households_payload

    clients = _clients(world)
    slug = world["dataset"].slug
    seen = Seen()

    def send(role: str, path: str, raw: str, method: str = "post", label: str = "") -> None:
        client = getattr(clients[role], method)
        seen.send(
            f"{method.upper()} {path} [{label}] {literal[:12]}",
            lambda: client(path, raw, content_type="application/json"),
        )

    column = '{"name":"x","type":"float","lower":0,"upper":%s}'
    policy = (
        '{"total_epsilon":%s,"max_query_epsilon":"1","min_contributors":%s,'
        '"max_rows_per_contributor":3,"auto_approve":true}'
    )
    price = '{"currency":"EUR","per_query":%s,"per_epsilon":"1","platform_fee":"0.2"}'
    dataset = '{"slug":"big","name":"Big","purpose":"p","retention_days":%s,"schema":{"columns":[%s]},"policy":%s,"price":%s}'
    for literal in ("1e400", "-1e400", "NaN", "Infinity", HUGE, "9" * 400, '"1e400"', f'"{HUGE}"'):
        ok_policy = policy % ('"1"', "5")
        ok_price = price % '"1"'
        create = "/api/v1/datasets/"
        send(
            "compliance",
            create,
            dataset % ("30", column % "1", ok_policy, price % literal),
            label="price",
        )
        send(
            "compliance",
            create,
            dataset % ("30", column % literal, ok_policy, ok_price),
            label="bound",
        )
        send(
            "compliance",
            create,
            dataset % ("30", column % "1", policy % (literal, "5"), ok_price),
            label="total_epsilon",
        )
        send(
            "compliance",
            create,
            dataset % ("30", column % "1", policy % ('"1"', literal), ok_price),
            label="min_contributors",
        )
        send(
            "compliance",
            create,
            dataset % (literal, column % "1", ok_policy, ok_price),
            label="retention_days",
        )
        send(
            "compliance", f"/api/v1/datasets/{slug}/", '{"retention_days":' + literal + "}", "patch"
        )
        send(
            "compliance",
            f"/api/v1/datasets/{slug}/",
            '{"policy":{"max_query_epsilon":' + literal + "}}",
            "patch",
        )
        send(
            "compliance",
            f"/api/v1/datasets/{slug}/",
            '{"price":{"per_epsilon":' + literal + "}}",
            "patch",
        )
        for path in ("/api/v1/queries/preview/", "/api/v1/queries/"):
            send(
                "business",
                path,
                '{"dataset":"' + slug + '","sql":"SELECT COUNT(*) AS n FROM households",'  # noqa: S608
                '"epsilon":' + literal + "}",
            )
        send("business", "/api/v1/billing/top-ups/", '{"amount":' + literal + "}")
        send(
            "contributor",
            f"/api/v1/datasets/{slug}/consent/",
            '{"privacy_cap":{"epsilon":' + literal + "}}",
        )
    # A policy whose rows per contributor times max contributors overflows OpenDP's u32.
    payload = households_payload(slug="overflow")
    payload["policy"] = {
        **payload["policy"],
        "max_rows_per_contributor": 70000,
        "max_contributors": 70000,
    }
    # A dataset whose stored policy predates that check: its previews and submissions are
    # refused, not a 500 from OpenDP.
    from cleanroom.datasets.models import Dataset

    stored = Dataset.objects.get(pk=world["dataset"].pk)
    Dataset.objects.filter(pk=stored.pk).update(
        policy={**stored.policy, "max_rows_per_contributor": 70000, "max_contributors": 70000}
    )
    for path in ("/api/v1/queries/preview/", "/api/v1/queries/"):
        seen.send(
            f"u32 overflow stored policy {path}",
            lambda path=path: clients["business"].post(
                path,
                {"dataset": slug, "sql": "SELECT COUNT(*) AS n FROM households", "epsilon": "1"},
                format="json",
            ),
        )
    stored_answers = [r for what, r in seen if what.startswith("u32 overflow stored")]
    assert [r.status_code for r in stored_answers] == [400, 400], [r.json() for r in stored_answers]
    seen.send(
        "u32 overflow policy",
        lambda: clients["compliance"].post("/api/v1/datasets/", payload, format="json"),
    )
    assert not seen.not_4xx(), seen.not_4xx()


@pytest.mark.django_db
def test_paging_and_ids_beyond_bigint_are_4xx(world: Any) -> None:
    clients = _clients(world)
    seen = Seen()
    gets = [
        ("compliance", f"/api/v1/audit/events/?page={HUGE}"),
        ("compliance", f"/api/v1/audit/events/?page_size={HUGE}"),
        ("compliance", f"/api/v1/audit/events/?page={HUGE}&page_size=500"),
        ("compliance", f"/api/v1/audit/proofs/inclusion/?seq={HUGE}"),
        ("compliance", f"/api/v1/audit/proofs/inclusion/?seq=1&tree_size={HUGE}"),
        ("compliance", f"/api/v1/audit/proofs/consistency/?first={HUGE}"),
        ("compliance", f"/api/v1/audit/proofs/consistency/?first=1&second={HUGE}"),
        ("compliance", f"/api/v1/payouts/?offset={HUGE}"),
        ("compliance", f"/api/v1/payouts/?limit={HUGE}"),
        ("compliance", f"/api/v1/payouts/?settlement={HUGE}"),
        ("compliance", f"/api/v1/payouts/distributions/?offset={HUGE}"),
        ("compliance", f"/api/v1/payouts/settlements/?offset={HUGE}"),
        ("compliance", f"/api/v1/payouts/settlements/{HUGE}/"),
        ("compliance", f"/api/v1/payouts/settlements/1/?contributor={HUGE}"),
        ("compliance", f"/api/v1/queries/{HUGE}/"),
        ("compliance", f"/api/v1/queries/{HUGE}/result/"),
        ("compliance", f"/api/v1/identity/trusted-issuers/{HUGE}/"),
        ("anonymous", f"/api/v1/identity/presentation-requests/{HUGE}/"),
        ("business", f"/api/v1/queries/{HUGE}/"),
    ]
    for role, path in gets:
        seen.send(f"GET {path}", lambda role=role, path=path: clients[role].get(path))
    for path in (f"/api/v1/queries/{HUGE}/approve/", f"/api/v1/queries/{HUGE}/reject/"):
        seen.send(
            f"POST {path}", lambda path=path: clients["compliance"].post(path, {}, format="json")
        )
    seen.send(
        "DELETE issuer",
        lambda: clients["compliance"].delete(f"/api/v1/identity/trusted-issuers/{HUGE}/"),
    )
    compliance = _portal(world["compliance"])
    pages = Seen()
    for path in (
        f"/audit/?page={HUGE}",
        f"/audit/events/{HUGE}/",
        f"/audit/queries/{HUGE}/",
        f"/audit/queries/?query={HUGE}",
        f"/audit/credentials/?page={HUGE}",
        f"/money/payouts/?page={HUGE}",
        f"/money/settlements/?page={HUGE}",
        f"/money/distributions/?page={HUGE}",
        f"/queries/{HUGE}/",
        f"/queries/{HUGE}/status/",
    ):
        pages.send(f"portal GET {path}", lambda path=path: compliance.get(path))
    for path in (f"/queries/{HUGE}/approve/", f"/queries/{HUGE}/reject/"):
        # The portal answers a refused review with a redirect and the message (no 5xx).
        pages.send(f"portal POST {path}", lambda path=path: compliance.post(path, {}))
    assert not seen.not_4xx(), seen.not_4xx()
    # A page past the end may show the last page (Paginator.get_page): never a 5xx.
    assert [f"{w} -> {r.status_code}" for w, r in pages if r.status_code >= 500] == []


@pytest.mark.django_db
def test_unstorable_text_in_json_is_a_4xx(world: Any) -> None:
    """PostgreSQL text and jsonb hold neither NUL nor an unpaired surrogate."""
    clients = _clients(world)
    slug = world["dataset"].slug
    seen = Seen()
    for escape in ("\\u0000", "\\ud800", "\\udfff"):
        seen.send(
            f"create dataset {escape}",
            lambda escape=escape: clients["compliance"].post(
                "/api/v1/datasets/",
                '{"slug":"odd","name":"a' + escape + '","purpose":"p","schema":{"columns":[{"name":'
                '"r","type":"string","categories":["a' + escape + '"]}]},"policy":{"total_epsilon":'
                '"1","max_query_epsilon":"1","min_contributors":5,"max_rows_per_contributor":3,'
                '"auto_approve":true},"price":{"currency":"EUR","per_query":"1","per_epsilon":"1",'
                '"platform_fee":"0.2"}}',
                content_type="application/json",
            ),
        )
        seen.send(
            f"upload {escape}",
            lambda escape=escape: clients["contributor"].post(
                f"/api/v1/datasets/{slug}/contributions/",
                '{"records":[{"age":30,"region":"north' + escape + '","income":1,'
                '"household_size":2,"owns_home":true}]}',
                content_type="application/json",
            ),
        )
        seen.send(
            f"preview {escape}",
            lambda escape=escape: clients["business"].post(
                "/api/v1/queries/preview/",
                '{"dataset":"' + slug + '","sql":"SELECT COUNT(*) AS n FROM households WHERE '  # noqa: S608
                "region = 'a" + escape + "'\"}",
                content_type="application/json",
            ),
        )
        seen.send(
            f"consent {escape}",
            lambda escape=escape: clients["contributor"].post(
                f"/api/v1/datasets/{slug}/consent/",
                '{"privacy_cap":{"epsilon":"1' + escape + '"}}',
                content_type="application/json",
            ),
        )
    # An escaped backslash before "u0000" is ordinary text, and a surrogate pair is a
    # character: both are accepted.
    fine = clients["compliance"].post(
        "/api/v1/datasets/",
        '{"slug":"fine","name":"a\\\\u0000 \\ud83d\\ude00","purpose":"p","schema":{"columns":'
        '[{"name":"r","type":"string"}]},"policy":{"total_epsilon":"1","max_query_epsilon":"1",'
        '"min_contributors":5,"max_rows_per_contributor":3,"auto_approve":true},"price":'
        '{"currency":"EUR","per_query":"1","per_epsilon":"1","platform_fee":"0.2"}}',
        content_type="application/json",
    )
    assert fine.status_code == 201, fine.json()
    assert fine.json()["name"] == "a\\u0000 \U0001f600"
    assert not seen.not_4xx(), seen.not_4xx()


ARABIC_TWELVE = "\u0661\u0662"  # "١٢": Python's int() and Decimal() read it as 12
SUPERSCRIPT_TWO = "\u00b2"  # "²": str.isdigit() is true, int() fails


@pytest.mark.django_db
def test_numbers_are_read_in_ascii_digits_only(world: Any) -> None:
    from payouts.selectors import billing_summary
    from tests.datasets.conftest import households_payload

    clients = _clients(world)
    slug = world["dataset"].slug
    organization = world["business"].organization
    balance = billing_summary(organization=organization)["balance"]
    seen = Seen()
    business, compliance = clients["business"], clients["compliance"]
    seen.send(
        "top-up ١٢",
        lambda: business.post("/api/v1/billing/top-ups/", {"amount": ARABIC_TWELVE}, format="json"),
    )
    seen.send(
        "top-up 1_2",
        lambda: business.post("/api/v1/billing/top-ups/", {"amount": "1_2"}, format="json"),
    )
    for field, value in (
        ("price", {**households_payload()["price"], "per_query": ARABIC_TWELVE}),
        ("policy", {**households_payload()["policy"], "total_epsilon": ARABIC_TWELVE}),
        ("retention_days", ARABIC_TWELVE),
    ):
        seen.send(
            f"create dataset {field}",
            lambda field=field, value=value: compliance.post(
                "/api/v1/datasets/",
                households_payload(slug=f"arabic_{field}", **{field: value}),
                format="json",
            ),
        )
    seen.send(
        "patch retention",
        lambda: compliance.patch(
            f"/api/v1/datasets/{slug}/", {"retention_days": ARABIC_TWELVE}, format="json"
        ),
    )
    for path in ("/api/v1/queries/preview/", "/api/v1/queries/"):
        seen.send(
            f"epsilon {path}",
            lambda path=path: business.post(
                path,
                {
                    "dataset": slug,
                    "sql": "SELECT COUNT(*) AS n FROM households",
                    "epsilon": "\u0660.\u0665",
                },
                format="json",
            ),
        )
    seen.send(
        "privacy cap",
        lambda: clients["contributor"].post(
            f"/api/v1/datasets/{slug}/consent/",
            {"privacy_cap": {"epsilon": ARABIC_TWELVE}},
            format="json",
        ),
    )
    for text in (ARABIC_TWELVE, SUPERSCRIPT_TWO, "1_0"):
        for path in (
            f"/api/v1/audit/events/?page={text}",
            f"/api/v1/audit/proofs/inclusion/?seq={text}",
            f"/api/v1/payouts/?offset={text}",
            f"/api/v1/payouts/?settlement={text}",
            f"/api/v1/payouts/distributions/?limit={text}",
        ):
            seen.send(f"GET {path}", lambda path=path: compliance.get(path))
    portal = _portal(world["compliance"])
    for text in (ARABIC_TWELVE, SUPERSCRIPT_TWO):
        seen.send(
            f"portal query lookup {text}",
            lambda text=text: portal.get(f"/audit/queries/?query={text}"),
        )
        form = {
            "slug": "arabic_form",
            "name": "A",
            "purpose": "p",
            "schema": '{"columns":[{"name":"x","type":"boolean"}]}',
            "total_epsilon": "1",
            "max_query_epsilon": "1",
            "min_contributors": "5",
            "max_rows_per_contributor": "3",
            "currency": "EUR",
            "per_query": "1",
            "per_epsilon": "1",
            "platform_fee": "0.2",
            "retention_days": "3" + text,
        }
        seen.send(
            f"portal new dataset retention {text}",
            lambda form=form: portal.post("/datasets/new/", form),
        )
        seen.send(
            "portal new dataset retention Infinity",
            lambda form=form: portal.post("/datasets/new/", {**form, "retention_days": "Infinity"}),
        )
    assert not seen.not_4xx(), seen.not_4xx()
    assert billing_summary(organization=organization)["balance"] == balance
    from cleanroom.datasets.models import Dataset

    assert not Dataset.objects.filter(slug__startswith="arabic").exists()
    # ASCII is still read: the same top-up in ASCII digits is accepted.
    response = business.post("/api/v1/billing/top-ups/", {"amount": "12"}, format="json")
    assert response.status_code == 201
    assert response.json()["amount"] == "12.000000"
