"""POST /api/v1/queries/preview/: epsilon, price and expected accuracy; spends nothing."""

from __future__ import annotations

from typing import Any

from audit.models import AuditEvent
from tests.queries.conftest import budget_state


def test_preview_gives_accuracy_per_output_cell_and_spends_nothing(
    households: Any, business_user: Any, api: Any
) -> None:
    before = budget_state(households)
    events = AuditEvent.objects.count()
    response = api(business_user).post(
        "/api/v1/queries/preview/",
        {
            "dataset": "households",
            "sql": "SELECT region, COUNT(*) AS n, SUM(age) AS s, AVG(income) AS m, MEDIAN(age) AS med "
            "FROM households GROUP BY region",
            "epsilon": "0.8",
        },
        format="json",
    )
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["epsilon"] == 0.8
    assert body["price"] == "9.500000"
    assert body["currency"] == "EUR"
    assert body["columns"] == ["region", "n", "s", "m", "med"]
    assert body["groups"] == 4
    assert body["fits_budget"] is True
    accuracy = {entry["column"]: entry for entry in body["accuracy"]}
    assert set(accuracy) == {"n", "s", "m", "med"}
    # Three noisy statistics share 0.8 (count, sum(age), sum(income)) plus the median:
    # each count carries Laplace noise whose 95% half-width is reported.
    assert accuracy["n"]["distribution"] == "Integer Laplace"
    assert accuracy["n"]["half_width"] > 0
    assert accuracy["s"]["half_width"] > accuracy["n"]["half_width"]
    # A mean's half-width is stated for a group of the pool's even share (6 // 4 groups).
    assert accuracy["m"]["group_size"] == 1 and accuracy["m"]["half_width"] > 0
    assert body["pool_size"] == 6 and body["delta"] == 0.0
    assert accuracy["med"]["half_width"] is None
    assert budget_state(households) == before
    assert AuditEvent.objects.count() == events


def test_more_epsilon_means_narrower_intervals(
    households: Any, business_user: Any, api: Any
) -> None:
    def half_width(epsilon: float) -> float:
        response = api(business_user).post(
            "/api/v1/queries/preview/",
            {
                "dataset": "households",
                "sql": "SELECT COUNT(*) AS n FROM households",
                "epsilon": epsilon,
            },
            format="json",
        )
        return float(response.json()["accuracy"][0]["half_width"])

    assert half_width(0.1) > 5 * half_width(1.0)


def test_preview_refusals_name_the_construct(households: Any, business_user: Any, api: Any) -> None:
    response = api(business_user).post(
        "/api/v1/queries/preview/",
        {"dataset": "households", "sql": "SELECT COUNT(*) FROM households ORDER BY 1"},
        format="json",
    )
    assert response.status_code == 400
    assert "ORDER BY" in response.json()["detail"]


def test_compliance_cannot_preview(households: Any, compliance_user: Any, api: Any) -> None:
    response = api(compliance_user).post(
        "/api/v1/queries/preview/",
        {"dataset": "households", "sql": "SELECT COUNT(*) FROM households"},
        format="json",
    )
    assert response.status_code == 403


def _preview(api: Any, user: Any, sql: str, epsilon: Any = "1") -> Any:
    return api(user).post(
        "/api/v1/queries/preview/",
        {"dataset": "households", "sql": sql, "epsilon": epsilon},
        format="json",
    )


def _submit(api: Any, user: Any, sql: str, epsilon: Any = "1") -> Any:
    return api(user).post(
        "/api/v1/queries/",
        {"dataset": "households", "sql": sql, "epsilon": epsilon},
        format="json",
    )


def test_preview_refuses_a_pool_below_the_minimum_like_submit(
    pool_dataset: Any, business_user: Any, api: Any
) -> None:
    """It used to say "fits the remaining budget" for a pool submit refuses."""
    dataset = pool_dataset(contributors=4, policy={"min_contributors": 5})
    before = budget_state(dataset)
    sql = "SELECT COUNT(*) AS n FROM households"

    preview = _preview(api, business_user, sql)
    submit = _submit(api, business_user, sql)

    assert preview.status_code == submit.status_code == 400
    assert (
        preview.json()["detail"]
        == submit.json()["detail"]
        == ("The pool has 4 contributors; this dataset needs at least 5 before it answers queries.")
    )
    assert budget_state(dataset) == before


def test_preview_refuses_an_exhausted_budget_like_submit(
    households: Any, business_user: Any, api: Any
) -> None:
    from decimal import Decimal

    from cleanroom.datasets.models import Dataset

    Dataset.objects.filter(pk=households.pk).update(spent_epsilon=Decimal("9.5"))
    sql = "SELECT COUNT(*) AS n FROM households"

    preview = _preview(api, business_user, sql, "1")
    submit = _submit(api, business_user, sql, "1")

    assert preview.status_code == submit.status_code == 400
    assert preview.json()["detail"] == submit.json()["detail"]
    assert "has only 0.5 left" in preview.json()["detail"]


def test_preview_says_plainly_when_the_pool_is_too_small_for_the_epsilon(
    households: Any, business_user: Any, api: Any
) -> None:
    body = _preview(
        api, business_user, "SELECT region, COUNT(*) AS n FROM households GROUP BY region", "0.5"
    ).json()

    (count,) = body["accuracy"]
    # 6 contributors over 4 regions: a count of about 1 against a half-width of dozens.
    assert count["relative_error"] == count["half_width"] / 1
    assert count["relative_to"] == "a count of about 1"
    (warning,) = body["warnings"]
    shown = f"{count['half_width']:,.2f}".rstrip("0").rstrip(".")
    assert warning.startswith(f"n: expect +-{shown} on a count of about 1 (")
    assert warning.endswith(
        "the pool is too small for this epsilon. Raise epsilon or wait for more contributors."
    )


def test_preview_gives_a_relative_error_per_cell_and_warns_only_where_it_is_large(
    pool_dataset: Any, business_user: Any, api: Any
) -> None:
    pool_dataset(contributors=400, rows=1, policy={"max_rows_per_contributor": 1})
    body = _preview(
        api,
        business_user,
        "SELECT region, COUNT(*) AS n, AVG(age) AS mean_age FROM households GROUP BY region",
    ).json()

    count, mean = body["accuracy"]
    assert count["relative_to"] == "a count of about 100"
    assert count["relative_error"] == count["half_width"] / 100 < 0.2
    assert mean["relative_to"] == "the column's range 18 to 100"
    assert mean["relative_error"] == mean["half_width"] / 82
    # The count is fine; the mean (worst case over the column's range) is called out.
    assert [w.split(":")[0] for w in body["warnings"]] == ["mean_age"]


def test_preview_states_a_short_balance_in_the_words_submit_refuses_with(
    households: Any, other_business_user: Any, api: Any
) -> None:
    """The price is what a business needs before topping up: stated, not a refusal."""
    sql = "SELECT COUNT(*) AS n FROM households"
    preview = _preview(api, other_business_user, sql)
    submit = _submit(api, other_business_user, sql)

    assert preview.status_code == 200
    assert submit.status_code == 400
    assert preview.json()["balance_refusal"] == submit.json()["detail"]
    assert preview.json()["price"] == "11.500000"
