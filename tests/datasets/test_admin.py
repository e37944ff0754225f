"""The admin lists datasets, consents and erasures, and never any contributed value."""

from __future__ import annotations

from typing import Any

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
