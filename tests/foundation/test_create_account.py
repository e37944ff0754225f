import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from cleanroom.accounts.models import User


@pytest.mark.django_db
def test_create_account_prints_a_working_token_on_the_last_line(capsys) -> None:
    call_command(
        "create_account",
        role="business",
        username="bob",
        password="bob-pass-123",
        organization="Bobco",
    )
    token = capsys.readouterr().out.strip().splitlines()[-1]
    user = User.objects.get(username="bob")
    assert user.role == "business" and user.organization is not None
    assert user.organization.name == "Bobco"
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.get("/api/v1/schema/").status_code == 200


@pytest.mark.django_db
def test_create_account_refuses_a_duplicate_and_changes_nothing() -> None:
    call_command("create_account", role="compliance", username="carol", password="carol-pass-1")
    with pytest.raises(CommandError, match="already exists"):
        call_command("create_account", role="compliance", username="carol", password="other-pass-1")
    assert User.objects.filter(username="carol").count() == 1
