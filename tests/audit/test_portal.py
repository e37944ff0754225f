"""Compliance audit pages: read-only views over the same selectors as the API."""

from __future__ import annotations

import csv
import io
import json

import pytest
from django.test import Client

from audit.services import audit_record, checkpoint_create

pytestmark = pytest.mark.django_db

PAGES = [
    "/audit/",
    "/audit/events/1/",
    "/audit/queries/7/",
    "/audit/budget/",
    "/audit/credentials/",
    "/audit/verify/",
    "/audit/export.csv",
    "/audit/export.jsonl",
    "/audit/export/log.jsonl",
    "/audit/public-key.pem",
]


@pytest.fixture
def officer(compliance_user) -> Client:
    client = Client()
    client.force_login(compliance_user)
    return client


@pytest.fixture
def query_story(compliance_user, business_user) -> None:
    """The events the other capabilities record for one query, plus noise around them."""
    audit_record(
        action="cleanroom.query.submitted",
        actor=business_user,
        subject="query:6",
        dataset="households",
        payload={"epsilon": "0.2"},
    )
    audit_record(
        action="cleanroom.query.submitted",
        actor=business_user,
        subject="query:7",
        dataset="households",
        payload={
            "epsilon": "0.5",
            "price": "2.500000",
            "organization": business_user.organization_id,
        },
    )
    audit_record(
        action="cleanroom.budget.charged",
        actor=business_user,
        subject="query:7",
        dataset="households",
        payload={"epsilon": "0.5", "spent_epsilon": "0.5", "total_epsilon": "3"},
    )
    audit_record(
        action="cleanroom.query.approved",
        actor=compliance_user,
        subject="query:7",
        dataset="households",
        payload={"reason": "aggregate only", "by": "compliance"},
    )
    audit_record(
        action="cleanroom.query.released",
        actor=None,
        subject="query:7",
        dataset="households",
        payload={"rows": 4},
    )
    audit_record(
        action="payouts.query.charged",
        actor=None,
        subject="query:7",
        dataset="households",
        payload={"amount": "2.500000", "currency": "EUR", "entry": 3},
    )
    audit_record(
        action="payouts.distribution.recorded",
        actor=None,
        subject="query:7",
        dataset="households",
        payload={
            "gross": "2.500000",
            "fee": "0.500000",
            "pool_size": 40,
            "share": "0.050000",
            "remainder": "0.000000",
            "currency": "EUR",
        },
    )
    audit_record(
        action="cleanroom.budget.charged",
        actor=business_user,
        subject="query:8",
        dataset="households",
        payload={"epsilon": "1", "spent_epsilon": "1.5", "total_epsilon": "3"},
    )
    audit_record(
        action="cleanroom.budget.charged",
        actor=business_user,
        subject="query:9",
        dataset="<script>",
        payload={"epsilon": "1", "spent_epsilon": "1", "total_epsilon": "2"},
    )
    audit_record(
        action="identity.presentation.refused",
        actor=None,
        subject="presentation_request:1",
        payload={"reason": "untrusted_issuer", "detail": "issuer not trusted"},
    )
    audit_record(
        action="identity.presentation.refused",
        actor=None,
        subject="presentation_request:2",
        payload={"reason": "nonce_reused"},
    )
    audit_record(
        action="identity.presentation.refused",
        actor=None,
        subject="presentation_request:3",
        payload={"reason": "untrusted_issuer"},
    )
    audit_record(
        action="identity.presentation.accepted", actor=None, subject="contributor:1", payload={}
    )


def test_only_compliance_officers_see_audit_pages(
    business_user, contributor, compliance_user
) -> None:
    audit_record(action="a.b.c", actor=None)
    anonymous = Client()
    for path in PAGES:
        response = anonymous.get(path)
        assert response.status_code == 302 and "/sign-in/" in response["Location"], path
    for user in (business_user, contributor.user):
        client = Client()
        client.force_login(user)
        for path in PAGES:
            assert client.get(path).status_code == 403, path


def test_pages_are_read_only(officer) -> None:
    for path in PAGES:
        assert officer.post(path).status_code == 405, path


def test_navigation_lists_the_audit_pages_for_compliance(officer) -> None:
    page = officer.get("/audit/").content.decode()
    for label in ("Audit log", "Budget use", "Credential checks", "Log verification"):
        assert label in page


def test_events_filter_and_page(officer, query_story) -> None:
    page = officer.get("/audit/", {"subject": "query:7"}).content.decode()
    assert "6 events." in page
    assert page.count("<td>query:7</td>") == 0 and page.count('href="/audit/queries/7/"') == 6
    assert "subject=query%3A7" in page  # export links carry the filters
    many = officer.get("/audit/", {"action": "identity.presentation."}).content.decode()
    assert "4 events." in many
    for _ in range(60):
        audit_record(action="a.b.c", actor=None)
    second = officer.get("/audit/", {"page": 2}).content.decode()
    assert "Page 2 of 2" in second


def test_a_bad_filter_is_a_clear_400_page(officer) -> None:
    response = officer.get("/audit/", {"since": "last tuesday"})
    assert response.status_code == 400
    assert "since must be a date" in response.content.decode()


def test_a_querys_whole_story_answers_who_what_cost_and_paid(
    officer, query_story, business_user, compliance_user
) -> None:
    page = officer.get("/audit/queries/7/").content.decode()
    assert (
        f"business:{business_user.pk} (organization {business_user.organization_id}, Acme)" in page
    )
    assert "households" in page
    assert f"approved by compliance:{compliance_user.pk} (compliance): “aggregate only”" in page
    assert "charged ε 0.5 (dataset at 0.5 of 3)" in page
    assert "2.500000 EUR" in page
    assert (
        '40 contributors in the pool, <span class="money" title="0.050000 EUR" '
        'data-exact="0.050000 EUR">€0.05</span> each'
    ) in page
    assert "released at" in page
    assert "query:6" not in page and "query:8" not in page
    assert officer.get("/audit/queries/", {"query": "query:7"})["Location"] == "/audit/queries/7/"
    assert officer.get("/audit/queries/", {"query": "seven"}).status_code == 400
    assert "holds nothing about query 99" in officer.get("/audit/queries/99/").content.decode()


def test_budget_use_is_an_inline_svg_per_dataset(officer, query_story) -> None:
    page = officer.get("/audit/budget/").content.decode()
    assert page.count("<svg") == 2
    assert "ε 1.5 of 3 spent, 1.5 remaining, over 2 budget events." in page
    assert "<script>" not in page and "&lt;script&gt;" in page
    only = officer.get("/audit/budget/", {"dataset": "households"}).content.decode()
    assert only.count("<svg") == 1


def test_credential_checks_with_refusal_reasons(officer, query_story) -> None:
    page = officer.get("/audit/credentials/").content.decode()
    assert "1 accepted" in page and "3 refused" in page
    assert '<td>untrusted_issuer</td><td class="num">2</td>' in page
    assert '<td>nonce_reused</td><td class="num">1</td>' in page
    assert "untrusted_issuer: issuer not trusted" in page


def test_exports_of_a_filtered_view(officer, query_story) -> None:
    response = officer.get("/audit/export.csv", {"subject": "query:7"})
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [r["action"] for r in rows] == [
        "cleanroom.query.submitted",
        "cleanroom.budget.charged",
        "cleanroom.query.approved",
        "cleanroom.query.released",
        "payouts.query.charged",
        "payouts.distribution.recorded",
    ]
    assert json.loads(rows[1]["payload"])["spent_epsilon"] == "0.5"
    lines = b"".join(
        officer.get(
            "/audit/export.jsonl", {"action": "identity.presentation.refused"}
        ).streaming_content
    ).splitlines()
    assert [json.loads(line)["payload"]["reason"] for line in lines] == [
        "untrusted_issuer",
        "nonce_reused",
        "untrusted_issuer",
    ]


def test_verification_status_with_the_latest_checkpoint(officer, query_story) -> None:
    checkpoint = checkpoint_create()
    assert checkpoint is not None
    page = officer.get("/audit/verify/").content.decode()
    assert "The log verifies." in page
    assert f"Tree size {checkpoint.tree_size}, signed {checkpoint.timestamp}" in page
    assert "python -m audit.verify" in page
    assert officer.get("/audit/public-key.pem").content.startswith(b"-----BEGIN PUBLIC KEY-----")


def test_an_entry_page_shows_its_verified_inclusion_proof(officer, query_story) -> None:
    checkpoint_create()
    page = officer.get("/audit/events/5/").content.decode()
    assert "Verified:" in page and "cleanroom.budget.charged" in page
    audit_record(action="a.b.c", actor=None)
    latest = officer.get("/audit/events/16/").content.decode()
    assert "newer than the latest signed checkpoint" in latest
    assert officer.get("/audit/events/999/").status_code == 404
