"""End to end through the real worker: a withdrawn contributor is not in the next query's
pool, and each contributor's /me/ shows exactly the queries that touched them."""

from __future__ import annotations

from typing import Any

from cleanroom.datasets.services import consent_withdraw
from cleanroom.queries.models import Query
from tests.conftest import wait_for
from tests.datasets.conftest import record


def test_next_query_after_withdrawal_leaves_them_out(
    worker: Any, api: Any, dataset: Any, consented: Any, upload: Any, business_user: Any
) -> None:
    from payouts.services import topup_record

    topup_record(
        organization=business_user.organization,
        amount=10**9,
        actor=None,
        currency="EUR",
        reference="datasets-e2e",
    )
    people = [consented() for _ in range(7)]
    for index, person in enumerate(people):
        upload(person, dataset, [record(age=20 + index)])
    leaver = people[-1]
    consent_withdraw(contributor=leaver, dataset=dataset)

    response = api(business_user).post(
        "/api/v1/queries/",
        {"dataset": "households", "sql": "SELECT COUNT(*) AS n FROM households", "epsilon": 0.5},
        format="json",
    )
    assert response.status_code == 202, response.json()
    query_id = response.json()["id"]
    wait_for(
        lambda: Query.objects.get(pk=query_id).status in ("released", "failed"),
        timeout=60,
        what="the query to run in the worker",
    )
    assert Query.objects.get(pk=query_id).status == "released"

    member = api(people[0].user).get("/api/v1/me/").json()
    assert [q["id"] for q in member["queries"]] == [query_id]
    assert member["privacy_loss"] == [
        {"dataset": "households", "epsilon": 0.5, "delta": 0.0, "epsilon_past_year": 0.5, "cap": None}
    ]
    left = api(leaver.user).get("/api/v1/me/").json()
    assert left["queries"] == []
    assert left["privacy_loss"] == []
    # The query's price, after the platform fee, is shared by the six members only.
    assert member["earnings"]["balance"] != "0.000000"
    assert left["earnings"] == {"balance": "0.000000", "currency": "EUR"}
