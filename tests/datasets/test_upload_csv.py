"""CSV uploads (multipart `file`): streamed, validated row by row, all or nothing."""

from __future__ import annotations

import io
from typing import Any

import pytest
from django.test import override_settings

from cleanroom.datasets.models import Contribution
from cleanroom.datasets.selectors import contributor_records
from cleanroom.datasets.services import dataset_update
from tests.datasets.conftest import HOUSEHOLDS_POLICY, state_of

URL = "/api/v1/datasets/households/contributions/"
HEADER = "age,region,income,household_size,owns_home\n"


def post_csv(client: Any, content: bytes, name: str = "records.csv") -> Any:
    upload = io.BytesIO(content)
    upload.name = name
    return client.post(URL, {"file": upload}, format="multipart")


def test_csv_is_accepted(api: Any, dataset: Any, consented: Any) -> None:
    contributor = consented()
    content = (HEADER + "34,north,41250.5,3,true\n61, west ,0,1,FALSE\n").encode()
    response = post_csv(api(contributor.user), content.replace(b" west ", b"west"))

    assert response.status_code == 201
    assert response.json()["accepted"] == 2
    assert contributor_records(contributor=contributor)[0]["records"] == [
        {"age": 34, "region": "north", "income": 41250.5, "household_size": 3, "owns_home": True},
        {"age": 61, "region": "west", "income": 0.0, "household_size": 1, "owns_home": False},
    ]


def test_header_order_bom_quotes_and_crlf(api: Any, dataset: Any, consented: Any) -> None:
    contributor = consented()
    content = (
        '\ufeffowns_home,income,region,household_size,age\r\n1,"1,5e3",south,2,40\r\n'.replace(
            '"1,5e3"', '"1.5e3"'
        )
    ).encode()
    response = post_csv(api(contributor.user), content)
    assert response.status_code == 201, response.json()
    assert contributor_records(contributor=contributor)[0]["records"] == [
        {"age": 40, "region": "south", "income": 1500.0, "household_size": 2, "owns_home": True}
    ]


def test_large_csv_never_touches_disk(
    api: Any, compliance_user: Any, dataset: Any, consented: Any
) -> None:
    # Above Django's 2.5 MB threshold an upload would go to a temporary file: not here.
    dataset_update(
        actor=compliance_user,
        dataset=dataset,
        changes={
            "policy": {
                **HOUSEHOLDS_POLICY,
                "max_rows_per_contributor": 200_000,
                "max_contributors": 20_000,  # rows x contributors must fit OpenDP's u32
            }
        },
    )
    contributor = consented()
    rows = "".join(
        f"{18 + i % 80},east,{i}.25,{1 + i % 12},{'true' if i % 2 else 'false'}\n"
        for i in range(120_000)
    )
    content = (HEADER + rows).encode()
    assert len(content) > 2.5 * 1024 * 1024

    from django.core.files.uploadedfile import TemporaryUploadedFile

    created: list[Any] = []
    original = TemporaryUploadedFile.__init__

    def spy(self: Any, *args: Any, **kwargs: Any) -> None:
        created.append(args)
        original(self, *args, **kwargs)

    TemporaryUploadedFile.__init__ = spy  # type: ignore[method-assign]
    try:
        response = post_csv(api(contributor.user), content)
    finally:
        TemporaryUploadedFile.__init__ = original  # type: ignore[method-assign]

    assert response.status_code == 201, response.json()
    assert created == []
    assert response.json()["accepted"] == 120_000
    assert Contribution.objects.get().rows == 120_000


BAD_FILES = [
    (b"", "The file is empty."),
    (b"\n\n", "The file is empty."),
    (HEADER.encode(), "The file has a header but no rows."),
    (
        (HEADER + "34,north,1,3,true\n").encode("utf-16"),
        "The upload was refused and nothing was stored: line 1 is not valid UTF-8 text.",
    ),
    (
        (HEADER + "34,nörth,1,3,true\n").encode("latin-1"),
        "The upload was refused and nothing was stored: line 2 is not valid UTF-8 text.",
    ),
    (
        (HEADER + "34,north,1,3,true\n35,no\x00rth,1,3,true\n").encode(),
        "The upload was refused and nothing was stored: line 3 contains a NUL byte.",
    ),
    (
        (HEADER + '34,"north,1,3,true\n').encode(),
        "The upload was refused and nothing was stored: the file is not well-formed CSV.",
    ),
]


@pytest.mark.parametrize(("content", "detail"), BAD_FILES)
def test_bad_files_store_nothing(
    api: Any, dataset: Any, consented: Any, content: bytes, detail: str
) -> None:
    client = api(consented().user)
    before = state_of()
    response = post_csv(client, content)
    assert response.status_code == 400
    assert response.json()["detail"] == detail
    assert state_of() == before


BAD_CELLS = [
    (
        '=HYPERLINK("http://x"),north,1,3,true',
        "age",
        "looks like a spreadsheet formula, which is not accepted",
    ),
    (
        "34,north,@SUM(A1),3,true",
        "income",
        "looks like a spreadsheet formula, which is not accepted",
    ),
    ("34,=north,1,3,true", "region", "not one of the categories: north, south, east, west"),
    ("thirty,north,1,3,true", "age", "expected an integer"),
    ("34,north,1e999,3,true", "income", "expected a finite number"),
    ("34,north,nan,3,true", "income", "expected a number"),
    ("34,north,1,,true", "household_size", "a value is required"),
    ("34,north,1,3,maybe", "owns_home", "expected true or false"),
    ("34,north,1,3", None, "expected 5 cells, found 4"),
]


@pytest.mark.parametrize(("line", "column", "message"), BAD_CELLS)
def test_bad_cells_are_reported_by_row(
    api: Any, dataset: Any, consented: Any, line: str, column: str | None, message: str
) -> None:
    client = api(consented().user)
    before = state_of()
    response = post_csv(client, (HEADER + "34,north,1,3,true\n" + line + "\n").encode())
    assert response.status_code == 400
    assert response.json()["errors"] == [{"row": 2, "column": column, "message": message}]
    assert state_of() == before


def test_formula_in_a_free_text_column(
    api: Any, compliance_user: Any, db: Any, make_contributor: Any
) -> None:
    from cleanroom.datasets.services import consent_give, dataset_create

    notes = dataset_create(
        actor=compliance_user,
        slug="notes",
        name="Notes",
        purpose="p",
        schema={"columns": [{"name": "note", "type": "string"}]},
        policy=HOUSEHOLDS_POLICY,
        price={"currency": "EUR", "per_query": "1", "per_epsilon": "1", "platform_fee": "0"},
    )
    contributor = make_contributor()
    consent_give(contributor=contributor, dataset=notes)
    upload = io.BytesIO(b"note\nhello\n=cmd|' /C calc'!A0\n-2+3\n")
    response = api(contributor.user).post(
        "/api/v1/datasets/notes/contributions/", {"file": upload}, format="multipart"
    )
    assert response.status_code == 400
    assert response.json()["errors"] == [
        {
            "row": 2,
            "column": "note",
            "message": "looks like a spreadsheet formula, which is not accepted",
        },
        {
            "row": 3,
            "column": "note",
            "message": "looks like a spreadsheet formula, which is not accepted",
        },
    ]
    assert Contribution.objects.count() == 0


@pytest.mark.parametrize(
    ("header", "errors"),
    [
        (
            "age,region,income,household_size,owns_home,pets",
            [{"row": 0, "column": "pets", "message": "unknown column"}],
        ),
        (
            "age,region,income,household_size",
            [{"row": 0, "column": "owns_home", "message": "missing required column"}],
        ),
        (
            "age,age,region,income,household_size,owns_home",
            [{"row": 0, "column": "age", "message": "column appears twice in the header"}],
        ),
    ],
)
def test_header_must_match_the_schema(
    api: Any, dataset: Any, consented: Any, header: str, errors: list[dict[str, Any]]
) -> None:
    client = api(consented().user)
    before = state_of()
    response = post_csv(client, (header + "\n34,north,1,3,true\n").encode())
    assert response.status_code == 400
    assert response.json()["errors"] == errors
    assert state_of() == before


def test_fifty_megabytes_is_refused_before_parsing(api: Any, dataset: Any, consented: Any) -> None:
    client = api(consented().user)
    before = state_of()
    big = HEADER.encode() + b"34,north,1,3,true\n" * (50 * 1024 * 1024 // 18)
    response = post_csv(client, big)
    assert response.status_code == 413
    # Refused by the request guard before any view runs (cleanroom/middleware.py).
    assert response.json()["detail"] == (
        "The request body is larger than the limit of 20 MB; "
        "send less at once (split an upload into several)."
    )
    assert state_of() == before


@override_settings(CLEANROOM_MAX_UPLOAD_BYTES=1000)
def test_the_limit_is_a_setting(api: Any, dataset: Any, consented: Any) -> None:
    response = api(consented().user).post(
        URL, {"records": [{"age": 30, "region": "x" * 2000}]}, format="json"
    )
    assert response.status_code == 413
    assert "20 MB" not in response.json()["detail"]


def test_multipart_without_a_file(api: Any, dataset: Any, consented: Any) -> None:
    response = api(consented().user).post(URL, {"other": "x"}, format="multipart")
    assert response.status_code == 400
    assert response.json()["detail"] == 'Send the CSV file in the multipart field "file".'
