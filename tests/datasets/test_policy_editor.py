"""The compliance officer's policy editor page: review a diff, then confirm it."""

from __future__ import annotations

import json
from typing import Any

from django.test import Client

from cleanroom.datasets.models import Dataset
from cleanroom.datasets.selectors import pool_size
from tests.datasets.conftest import record

URL = "/datasets/households/policy/"


def _signed_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _form(client: Client) -> dict[str, str]:
    """The editor's form as the page fills it (every input's current value)."""
    page = client.get(URL)
    fields = page.context["policy_fields"] + page.context["price_fields"]
    form = {field["name"]: str(field["value"]) for field in fields}
    form.update(
        step="review",
        purpose=page.context["purpose"],
        retention_days=str(page.context["retention_days"]),
    )
    return form


def _pool(dataset: Any, consented: Any, upload: Any, size: int) -> None:
    for _ in range(size):
        upload(consented(), dataset, [record()])


def test_review_shows_the_diff_who_leaves_and_changes_nothing_until_confirmed(
    compliance_user: Any, dataset: Any, consented: Any, upload: Any
) -> None:
    _pool(dataset, consented, upload, 4)
    client = _signed_in(compliance_user)
    form = _form(client) | {"policy.total_epsilon": "25", "policy.min_contributors": "8"}

    review = client.post(URL, form)

    assert review.status_code == 200
    text = review.content.decode()
    assert "<code>policy.total_epsilon</code>" in text and "needs new consent" in text
    assert "<code>policy.min_contributors</code>" in text and "no new consent" in text
    assert "4 contributors will leave the pool" in text
    fresh = Dataset.objects.get(pk=dataset.pk)
    assert (fresh.terms_version, fresh.policy["total_epsilon"]) == (1, "10")

    changes = review.context["changes_json"]
    assert json.loads(changes) == {"policy": {"total_epsilon": "25", "min_contributors": 8}}
    applied = client.post(URL, {"step": "apply", "changes": changes}, follow=True)
    assert "4 contributors left the pool until they consent to the new terms." in (
        applied.content.decode()
    )
    fresh = Dataset.objects.get(pk=dataset.pk)
    assert (fresh.terms_version, fresh.policy["total_epsilon"]) == (2, "25")
    assert pool_size(dataset=fresh) == 0


def test_a_protective_change_keeps_everyone_in_the_pool(
    compliance_user: Any, dataset: Any, consented: Any, upload: Any
) -> None:
    _pool(dataset, consented, upload, 3)
    client = _signed_in(compliance_user)
    review = client.post(URL, _form(client) | {"policy.max_query_epsilon": "0.5"})
    assert "only protect contributors more" in review.content.decode()
    client.post(URL, {"step": "apply", "changes": review.context["changes_json"]})
    fresh = Dataset.objects.get(pk=dataset.pk)
    assert (fresh.terms_version, fresh.policy["max_query_epsilon"]) == (1, "0.5")
    assert pool_size(dataset=fresh) == 3


def test_bad_values_are_named_and_change_nothing(compliance_user: Any, dataset: Any) -> None:
    client = _signed_in(compliance_user)
    response = client.post(URL, _form(client) | {"policy.min_contributors": "ten"})
    assert response.status_code == 400
    assert "min_contributors must be a whole number" in response.content.decode()
    junk = client.post(URL, {"step": "apply", "changes": "[1"})
    assert junk.status_code == 400
    assert Dataset.objects.get(pk=dataset.pk).terms_version == 1


def test_only_compliance_opens_the_editor(
    business_user: Any, contributor: Any, dataset: Any
) -> None:
    assert _signed_in(business_user).get(URL).status_code == 403
    assert _signed_in(contributor.user).get(URL).status_code == 403
    assert Client().get(URL).status_code == 302
