"""A contributor's pages say what is true: withdrawn is not "not consented", the pool holds
their rows only once it does, withdrawal is confirmed and explained, upload errors come
first, erasure looks dangerous, earnings say when and how they are paid."""

from __future__ import annotations

from typing import Any

from django.test import Client

from tests.datasets.conftest import record


def _client(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_catalog_says_withdrawn_after_a_withdrawal(
    dataset: Any, consented: Any, make_contributor: Any
) -> None:
    from cleanroom.datasets.services import consent_withdraw

    person = consented()
    consent_withdraw(contributor=person, dataset=dataset)
    page = _client(person.user).get("/datasets/").content.decode()
    assert "<td>withdrawn</td>" in page and "not consented" not in page
    stranger = _client(make_contributor().user).get("/datasets/").content.decode()
    assert "not consented" in stranger


def test_rows_in_the_pool_only_once_there_are_rows(
    dataset: Any, consented: Any, upload: Any
) -> None:
    person = consented()
    client = _client(person.user)
    before = client.get("/datasets/households/").content.decode()
    assert "Your rows are in the pool." not in before
    assert "Upload your records below to join the pool." in before
    upload(person, dataset, [record()])
    assert "Your rows are in the pool." in client.get("/datasets/households/").content.decode()


def test_withdraw_asks_for_confirmation_and_says_what_happens(dataset: Any, consented: Any) -> None:
    page = _client(consented().user).get("/datasets/households/").content.decode()
    confirm = page[page.index('<details class="confirm" id="withdraw">') :]
    assert "<summary" in confirm  # the form is behind a first click
    assert "no query of Households sees your rows" in confirm
    assert "what you earned from them stays yours" in confirm
    assert '<button class="danger">Yes, withdraw my consent</button>' in confirm


def test_upload_errors_come_before_the_rest_of_the_page(dataset: Any, consented: Any) -> None:
    person = consented()
    response = _client(person.user).post(
        "/datasets/households/upload/", {"records": '[{"age": 12}]'}
    )
    page = response.content.decode()
    assert response.status_code == 400
    assert page.index('id="upload-problem"') < page.index("<h2>Purpose</h2>")
    assert "Your upload was refused; nothing was stored" in page


def test_erase_looks_dangerous_and_earnings_say_how_they_are_paid(contributor: Any) -> None:
    client = _client(contributor.user)
    rights = client.get("/my-data/").content.decode()
    assert '<button class="danger">Erase my data</button>' in rights
    assert "(cannot be undone)" in rights
    earnings = client.get("/earnings/").content.decode()
    assert "every hour a settlement books what you earned" in earnings
    assert 'id="no-destination"' in earnings and "nothing can be paid to you" in earnings
