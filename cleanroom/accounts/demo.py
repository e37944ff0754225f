"""Demo accounts: a compliance officer and a business with a token and a prepaid balance."""

from __future__ import annotations

from typing import Any

from cleanroom.accounts.models import User
from cleanroom.accounts.services import account_create, token_for

DEMO_COMPLIANCE = ("compliance", "compliance-demo-pass")
DEMO_BUSINESS = ("acme", "acme-demo-pass", "Acme Analytics")


def seed(*, stdout: Any = None) -> list[str]:
    if not User.objects.filter(username=DEMO_COMPLIANCE[0]).exists():
        account_create(role="compliance", username=DEMO_COMPLIANCE[0], password=DEMO_COMPLIANCE[1])
    if not User.objects.filter(username=DEMO_BUSINESS[0]).exists():
        account_create(
            role="business",
            username=DEMO_BUSINESS[0],
            password=DEMO_BUSINESS[1],
            organization=DEMO_BUSINESS[2],
        )
    business = User.objects.get(username=DEMO_BUSINESS[0])
    return [
        f"Compliance officer: {DEMO_COMPLIANCE[0]} / {DEMO_COMPLIANCE[1]}",
        f"Business ({DEMO_BUSINESS[2]}): {DEMO_BUSINESS[0]} / {DEMO_BUSINESS[1]}"
        f"  API token: {token_for(user=business)}",
    ]
