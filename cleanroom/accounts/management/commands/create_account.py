"""`manage.py create_account --role {business,compliance} --username U --password P [--organization NAME]`."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from cleanroom.accounts.services import account_create, token_for
from cleanroom.errors import DomainError


class Command(BaseCommand):
    help = "Create a business or compliance account and print its API token on the last line."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--role", required=True, choices=["business", "compliance"])
        parser.add_argument("--username", required=True)
        parser.add_argument("--password", required=True)
        parser.add_argument("--organization", default=None)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            user = account_create(
                role=options["role"],
                username=options["username"],
                password=options["password"],
                organization=options["organization"],
            )
        except DomainError as exc:
            raise CommandError(exc.detail) from exc
        org = f" in organization {user.organization.name!r}" if user.organization else ""
        self.stdout.write(f"Created {user.role} account {user.username!r}{org}.")
        self.stdout.write(token_for(user=user))
