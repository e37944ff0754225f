"""Idempotency-Key on uploads, top-ups, query submissions, reviews and settlement runs
(issue 11, defect 7: every money or budget write).

A repeat with the same key and body replays the first answer (same status and body) and
does nothing twice; the same key with another body is a 409 that changes nothing; a
repeat sent while the first is still running waits for it and replays its answer.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connection

from cleanroom.datasets.models import Contribution
from cleanroom.datasets.services import consent_give
from cleanroom.queries.models import Query
from payouts.models import JournalEntry
from tests.queries.conftest import rows_for

UPLOAD = "/api/v1/datasets/households/contributions/"
SQL_GROUPED = "SELECT region, COUNT(*) AS n FROM households GROUP BY region"


def post(client: Any, path: str, body: dict[str, Any], key: str | None) -> Any:
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key is not None else {}
    return client.post(path, body, format="json", **headers)


@pytest.mark.django_db
def test_a_repeated_upload_is_stored_once_and_answered_the_same(
    households: Any, make_contributor: Any, api: Any
) -> None:
    person = make_contributor("did:example:retrying")
    consent_give(contributor=person, dataset=households)
    client = api(person.user)
    body = {"records": rows_for(99, 2)}

    first = post(client, UPLOAD, body, "upload-1")
    again = post(client, UPLOAD, body, "upload-1")

    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert Contribution.objects.filter(contributor=person).count() == 1

    other = post(client, UPLOAD, {"records": rows_for(98, 1)}, "upload-1")
    assert other.status_code == 409
    assert "different request" in other.json()["detail"]
    assert Contribution.objects.filter(contributor=person).count() == 1
    # Without a key (or with a new one) an upload is a new upload.
    assert post(client, UPLOAD, {"records": rows_for(98, 1)}, "upload-2").status_code == 201
    assert Contribution.objects.filter(contributor=person).count() == 2


@pytest.mark.django_db
def test_a_repeated_submission_is_one_query_one_hold(
    households: Any, business_user: Any, api: Any
) -> None:
    client = api(business_user)
    body = {"dataset": "households", "sql": SQL_GROUPED, "epsilon": 0.5}
    entries = JournalEntry.objects.count()

    first = post(client, "/api/v1/queries/", body, "submit-1")
    again = post(client, "/api/v1/queries/", body, "submit-1")

    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    assert Query.objects.count() == 1
    assert JournalEntry.objects.count() == entries + 1  # one hold
    households.refresh_from_db()
    assert str(households.spent_epsilon.normalize()) == "0.5"
    assert post(client, "/api/v1/queries/", body | {"epsilon": 0.4}, "submit-1").status_code == 409
    assert Query.objects.count() == 1


@pytest.mark.django_db
def test_a_refused_first_attempt_is_not_stored(
    households: Any, business_user: Any, api: Any
) -> None:
    client = api(business_user)
    body = {"dataset": "households", "sql": "SELECT * FROM households"}
    assert post(client, "/api/v1/queries/", body, "k").status_code == 400
    assert post(client, "/api/v1/queries/", body, "k").status_code == 400  # evaluated again
    good = post(client, "/api/v1/queries/", {"dataset": "households", "sql": SQL_GROUPED}, "k2")
    assert good.status_code == 202


@pytest.mark.django_db
def test_keys_belong_to_their_user(
    households: Any, business_user: Any, other_business_user: Any, api: Any
) -> None:
    body = {"amount": "10.00"}
    mine = post(api(business_user), "/api/v1/billing/top-ups/", body, "same-key")
    theirs = post(api(other_business_user), "/api/v1/billing/top-ups/", body, "same-key")
    assert mine.status_code == theirs.status_code == 201
    assert mine.json()["entry"] != theirs.json()["entry"]


@pytest.mark.django_db
@pytest.mark.parametrize("key", ["", "x" * 256, "caf\u00e9", "tab\there"])
def test_a_malformed_key_is_refused(business_user: Any, api: Any, key: str) -> None:
    before = JournalEntry.objects.count()
    response = post(api(business_user), "/api/v1/billing/top-ups/", {"amount": "10.00"}, key)
    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()["detail"]
    assert JournalEntry.objects.count() == before


@pytest.mark.django_db(transaction=True)
def test_concurrent_repeats_of_a_top_up_credit_once(business_user: Any, api: Any) -> None:
    """Eight clients send the same top-up with the same key at the same moment."""
    body = {"amount": "25.00"}
    start = threading.Barrier(8)
    answers: list[Any] = []

    def send() -> None:
        client = api(business_user)
        start.wait()
        try:
            answers.append(post(client, "/api/v1/billing/top-ups/", body, "topup-race"))
        finally:
            connection.close()

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert [a.status_code for a in answers] == [201] * 8
    assert len({a.json()["entry"] for a in answers}) == 1
    assert {a.json()["balance"] for a in answers} == {"25.000000"}
    assert sum(a.has_header("Idempotent-Replayed") for a in answers) == 7
    summary = api(business_user).get("/api/v1/billing/").json()
    assert summary["balance"] == "25.000000"


@pytest.mark.django_db
def test_a_retried_review_replays_its_answer_instead_of_a_conflict(
    pool_dataset: Any, business_user: Any, compliance_user: Any, api: Any
) -> None:
    """Approving (or rejecting) moves budget: a retry after a lost answer gets that answer."""
    pool_dataset(policy={"auto_approve": False})
    business = api(business_user)
    body = {"dataset": "households", "sql": SQL_GROUPED, "epsilon": "0.5"}
    first_pk = post(business, "/api/v1/queries/", body, None).json()["id"]
    second_pk = post(business, "/api/v1/queries/", body, None).json()["id"]
    officer = api(compliance_user)
    for pk, action, status in ((first_pk, "approve", "queued"), (second_pk, "reject", "rejected")):
        path = f"/api/v1/queries/{pk}/{action}/"
        first = post(officer, path, {"reason": "reviewed"}, f"review-{pk}")
        again = post(officer, path, {"reason": "reviewed"}, f"review-{pk}")
        assert first.status_code == again.status_code == 200, again.json()
        assert again.json() == first.json() and again.json()["status"] == status
        assert again["Idempotent-Replayed"] == "true"
        # Without the key the same retry is refused: the query is no longer pending.
        assert post(officer, path, {"reason": "reviewed"}, None).status_code == 409
    assert sorted(Query.objects.values_list("status", flat=True)) == ["queued", "rejected"]


@pytest.mark.django_db(transaction=True)
def test_a_retried_settlement_request_queues_one_run(
    compliance_user: Any, api: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from payouts import tasks

    queued: list[Any] = []
    monkeypatch.setattr(tasks.settlement_run, "delay", lambda **kwargs: queued.append(kwargs))
    officer = api(compliance_user)
    answers = [post(officer, "/api/v1/payouts/settlements/", {}, "settle-dec") for _ in range(2)]
    assert [a.status_code for a in answers] == [202, 202]
    assert answers[1]["Idempotent-Replayed"] == "true"
    assert queued == [{"requested_by": compliance_user.pk}]
