"""IBANs and account-holder names are encrypted at rest and shown masked (last 4 only)."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection

from payouts.fields import pii_decrypt, pii_encrypt
from payouts.models import PayoutDestination
from payouts.services import payout_destination_set

IBAN = "DE89370400440532013000"


def _raw(table: str, column: str) -> bytes:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM {table}")  # noqa: S608 (fixed names)
        return bytes(cursor.fetchone()[0])


def test_destination_is_ciphertext_in_the_database(make_contributor: Any, api: Any) -> None:
    person = make_contributor("did:example:ada")
    payout_destination_set(contributor=person, holder_name="Ada Lovelace", iban=IBAN)
    for column in ("iban", "holder_name"):
        raw = _raw("payouts_payoutdestination", column)
        assert IBAN.encode() not in raw and b"Ada" not in raw
    destination = PayoutDestination.objects.get()
    assert (destination.iban, destination.holder_name) == (IBAN, "Ada Lovelace")
    shown = api(person.user).get("/api/v1/me/payout-destination/").json()
    assert shown["iban"] == "**** 3000"
    assert "DE89" not in str(shown) and "370400" not in str(shown)


def test_a_blob_moved_to_another_column_or_with_another_kek_does_not_decrypt(
    settings: Any,
) -> None:
    blob = pii_encrypt(IBAN, aad="payouts:payouts_payout.iban")
    assert pii_decrypt(blob, aad="payouts:payouts_payout.iban") == IBAN
    with pytest.raises(ValueError):
        pii_decrypt(blob, aad="payouts:payouts_payoutdestination.iban")
    tampered = bytearray(blob)
    tampered[-1] ^= 1
    with pytest.raises(ValueError):
        pii_decrypt(bytes(tampered), aad="payouts:payouts_payout.iban")
    # After a KEK rotation the old KEK still decrypts (it is listed as previous) ...
    old = settings.CLEANROOM_KEK
    settings.CLEANROOM_KEK = "A" * 43 + "="
    settings.CLEANROOM_KEK_PREVIOUS = [old]
    assert pii_decrypt(blob, aad="payouts:payouts_payout.iban") == IBAN
    # ... and without it nothing does.
    settings.CLEANROOM_KEK_PREVIOUS = []
    with pytest.raises(ValueError):
        pii_decrypt(blob, aad="payouts:payouts_payout.iban")


@pytest.mark.slow
def test_migration_encrypts_existing_rows_and_reverses(
    transactional_db: Any, make_contributor: Any
) -> None:
    from django.db.migrations.executor import MigrationExecutor

    person = make_contributor("did:example:migrated")
    executor = MigrationExecutor(connection)
    before = [("payouts", "0004_query_holds")]
    after = [("payouts", "0005_encrypt_bank_details")]
    executor.migrate(before)
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO payouts_payoutdestination "
            "(contributor_id, provider, holder_name, iban, updated_at) "
            "VALUES (%s, 'fake_bank', 'Grace Hopper', %s, now())",
            [person.pk, IBAN],
        )
    executor = MigrationExecutor(connection)
    executor.migrate(after)
    raw = _raw("payouts_payoutdestination", "iban")
    assert IBAN.encode() not in raw
    destination = PayoutDestination.objects.get()
    assert (destination.iban, destination.holder_name) == (IBAN, "Grace Hopper")
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    with connection.cursor() as cursor:
        cursor.execute("SELECT holder_name, iban FROM payouts_payoutdestination")
        assert cursor.fetchone() == ("Grace Hopper", IBAN)
    executor = MigrationExecutor(connection)
    executor.migrate(after)
    assert PayoutDestination.objects.get().iban == IBAN
