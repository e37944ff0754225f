"""POST /api/v1/datasets/{slug}/contributions/ with JSON records: validated, all or nothing."""

from __future__ import annotations

from typing import Any

import pytest

from audit.models import AuditEvent
from cleanroom.datasets.models import Contribution, ContributorKey
from cleanroom.datasets.selectors import contributor_records
from tests.datasets.conftest import record, state_of

URL = "/api/v1/datasets/households/contributions/"


def test_records_are_accepted_and_stored_encrypted(api: Any, dataset: Any, consented: Any) -> None:
    contributor = consented()
    rows = [record(), record(age=61, region="west", income=0, owns_home=False)]

    response = api(contributor.user).post(URL, {"records": rows}, format="json")

    assert response.status_code == 201
    contribution = Contribution.objects.get()
    assert response.json() == {"id": contribution.pk, "dataset": "households", "accepted": 2}
    assert contribution.rows == 2
    assert b"north" not in bytes(contribution.ciphertext)
    assert ContributorKey.objects.get(contributor=contributor).wrapped is not None
    assert contributor_records(contributor=contributor)[0]["records"] == [
        record(),
        record(age=61, region="west", income=0.0, owns_home=False),
    ]
    event = AuditEvent.objects.get(action="cleanroom.contribution.uploaded")
    assert event.payload == {"contribution": contribution.pk, "rows": 2}
    assert event.dataset == "households"


def test_integral_floats_count_as_integers(api: Any, dataset: Any, consented: Any) -> None:
    response = api(consented().user).post(URL, {"records": [record(age=40.0)]}, format="json")
    assert response.status_code == 201


BAD_ROWS = [
    (record(age="34"), "age", "expected an integer"),
    (record(age=34.5), "age", "expected an integer"),
    (record(age=True), "age", "expected an integer"),
    (record(age=17), "age", "out of bounds: must be between 18 and 100"),
    (record(age=101), "age", "out of bounds: must be between 18 and 100"),
    (record(income="lots"), "income", "expected a number"),
    (record(income=500000.01), "income", "out of bounds: must be between 0.0 and 500000.0"),
    (record(region="mars"), "region", "not one of the categories: north, south, east, west"),
    (record(region=3), "region", "expected a string"),
    (record(owns_home="yes"), "owns_home", "expected true or false"),
    (record(owns_home=None), "owns_home", "a value is required"),
    ({**record(), "pets": 2}, "pets", "unknown column"),
    ({k: v for k, v in record().items() if k != "income"}, "income", "missing required column"),
]


@pytest.mark.parametrize(("bad", "column", "message"), BAD_ROWS)
def test_a_bad_row_refuses_the_whole_upload(
    api: Any, dataset: Any, consented: Any, bad: dict[str, Any], column: str, message: str
) -> None:
    client = api(consented().user)
    before = state_of()

    response = client.post(URL, {"records": [record(), record(), bad]}, format="json")

    assert response.status_code == 400
    body = response.json()
    assert body["errors"] == [{"row": 3, "column": column, "message": message}]
    assert body["detail"] == "The upload was refused and nothing was stored: 1 error(s)."
    assert state_of() == before


def test_every_error_is_listed_with_its_row(api: Any, dataset: Any, consented: Any) -> None:
    rows = [record(age=5), record(), record(region="x", owns_home=1), "not an object"]
    response = api(consented().user).post(URL, {"records": rows}, format="json")
    assert response.status_code == 400
    assert response.json()["errors"] == [
        {"row": 1, "column": "age", "message": "out of bounds: must be between 18 and 100"},
        {
            "row": 3,
            "column": "region",
            "message": "not one of the categories: north, south, east, west",
        },
        {"row": 3, "column": "owns_home", "message": "expected true or false"},
        {"row": 4, "column": None, "message": "each record must be an object of column: value"},
    ]


def test_error_messages_never_echo_the_value(api: Any, dataset: Any, consented: Any) -> None:
    secret = "zq-secret-marker-8841"
    response = api(consented().user).post(
        URL, {"records": [record(region=secret), record(age=secret)]}, format="json"
    )
    assert response.status_code == 400
    assert secret not in response.content.decode()


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"records": []}, "The upload holds no records."),
        ({"records": "age,region"}, "records must be a list of objects."),
        ({"rows": [record()]}, 'Send JSON {"records": [...]} or a CSV file.'),
        ([record()], 'Send JSON {"records": [...]} or a CSV file.'),
    ],
)
def test_empty_or_malformed_bodies(
    api: Any, dataset: Any, consented: Any, body: Any, detail: str
) -> None:
    client = api(consented().user)
    before = state_of()
    response = client.post(URL, body, format="json")
    assert response.status_code == 400
    assert response.json()["detail"] == detail
    assert state_of() == before


def test_invalid_json_is_a_clear_400(api: Any, dataset: Any, consented: Any) -> None:
    client = api(consented().user)
    before = state_of()
    response = client.post(URL, b'{"records": [', content_type="application/json")
    assert response.status_code == 400
    assert response.json()["detail"].startswith("JSON parse error")
    assert state_of() == before
