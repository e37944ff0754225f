"""The admin lists datasets, consents and erasures, and never any contributed value."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from cleanroom.accounts.models import User
from tests.datasets.conftest import record


def test_admin_pages_show_no_contributed_value(dataset: Any, consented: Any, upload: Any) -> None:
    person = consented()
    upload(person, dataset, [record(income=123456.75)])
    admin = User.objects.create_superuser(
        "root", "root@example.org", "root-pass-1", role="compliance"
    )
    client = Client()
    client.force_login(admin)
    for path in (
        "/admin/datasets/dataset/",
        f"/admin/datasets/dataset/{dataset.pk}/change/",
        "/admin/datasets/consent/",
    ):
        response = client.get(path)
        assert response.status_code == 200, path
        assert "123456.75" not in response.content.decode()
    assert client.get("/admin/datasets/contribution/").status_code == 404


def _superuser_client() -> Client:
    admin = User.objects.create_superuser(
        "root", "root@example.org", "root-pass-1", role="compliance"
    )
    client = Client()
    client.force_login(admin)
    return client


def _everything() -> dict[str, Any]:
    from audit.models import AuditEvent
    from cleanroom.datasets.models import Consent, Dataset, Erasure

    return {
        "consents": list(Consent.objects.order_by("pk").values()),
        "datasets": list(Dataset.objects.order_by("pk").values()),
        "erasures": list(Erasure.objects.order_by("pk").values()),
        "audit": AuditEvent.objects.count(),
    }


def test_superuser_cannot_delete_or_change_consent_dataset_or_erasure(
    dataset: Any, consented: Any, upload: Any
) -> None:
    from cleanroom.datasets.models import Consent, Erasure
    from cleanroom.datasets.selectors import pool_size
    from cleanroom.datasets.services import consent_withdraw, contributor_erase_request

    person = consented()
    upload(person, dataset, [record()])
    consent_withdraw(contributor=person, dataset=dataset)
    other = consented()
    contributor_erase_request(contributor=other)
    consent = Consent.objects.get(contributor=person)
    erasure = Erasure.objects.get(contributor=other)
    client = _superuser_client()
    before = _everything()
    attempts = [
        (f"/admin/datasets/consent/{consent.pk}/delete/", {"post": "yes"}),
        (f"/admin/datasets/consent/{consent.pk}/change/", {"withdrawn_at": ""}),
        ("/admin/datasets/consent/add/", {"dataset": dataset.pk, "terms_version": 1}),
        (
            "/admin/datasets/consent/",
            {"action": "delete_selected", "_selected_action": [consent.pk], "post": "yes"},
        ),
        (f"/admin/datasets/dataset/{dataset.pk}/delete/", {"post": "yes"}),
        (f"/admin/datasets/dataset/{dataset.pk}/change/", {"name": "Renamed"}),
        ("/admin/datasets/dataset/add/", {"slug": "sneaky", "name": "Sneaky"}),
        (f"/admin/datasets/erasure/{erasure.pk}/delete/", {"post": "yes"}),
        (f"/admin/datasets/erasure/{erasure.pk}/change/", {"status": "done"}),
    ]
    for path, data in attempts:
        response = client.post(path, data)
        # The bulk action is simply absent (the list renders again); the rest are 403.
        expected = 200 if path.endswith("/consent/") else 403
        assert response.status_code == expected, path
    assert _everything() == before
    assert pool_size(dataset=dataset) == 0
    # Detail pages remain readable, without a delete link.
    page = client.get(f"/admin/datasets/consent/{consent.pk}/change/")
    assert page.status_code == 200
    assert "/delete/" not in page.content.decode()


def test_database_refuses_to_delete_or_rewrite_a_consent(
    dataset: Any, consented: Any, upload: Any
) -> None:
    from django.db import IntegrityError, connection, transaction
    from django.utils import timezone

    from cleanroom.datasets.models import Consent
    from cleanroom.datasets.services import consent_withdraw

    if connection.vendor != "postgresql":
        pytest.skip("the append-only trigger exists on PostgreSQL only")
    person = consented()
    upload(person, dataset, [record()])
    consent_withdraw(contributor=person, dataset=dataset)
    consent = Consent.objects.get(contributor=person)
    before = _everything()
    for change in (
        lambda: Consent.objects.filter(pk=consent.pk).delete(),
        lambda: Consent.objects.filter(pk=consent.pk).update(withdrawn_at=None),
        lambda: Consent.objects.filter(pk=consent.pk).update(withdrawn_at=timezone.now()),
        lambda: Consent.objects.filter(pk=consent.pk).update(terms_version=2),
        lambda: Consent.objects.filter(pk=consent.pk).update(given_at=timezone.now()),
    ):
        with pytest.raises(IntegrityError), transaction.atomic():
            change()
    assert _everything() == before
    # Closing an open consent (the services' withdrawal) is the one allowed update.
    again = consented()
    open_consent = Consent.objects.get(contributor=again)
    Consent.objects.filter(pk=open_consent.pk).update(withdrawn_at=timezone.now())
    assert Consent.objects.get(pk=open_consent.pk).withdrawn_at is not None
