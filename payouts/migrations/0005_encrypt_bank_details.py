"""Encrypt IBANs and account-holder names at rest (payouts.fields.EncryptedTextField).

New binary columns are added, existing rows encrypted into them, the plaintext columns
dropped and the new ones renamed. The reverse decrypts back into plaintext columns.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations, models

import payouts.fields

# (model, field, max_length of the plaintext column)
FIELDS = [
    ("payoutdestination", "holder_name", 140),
    ("payoutdestination", "iban", 34),
    ("payout", "holder_name", 140),
    ("payout", "iban", 34),
    ("fakebanktransfer", "iban", 34),
]


def _aad(model: Any, field: str) -> str:
    return f"payouts:{model._meta.db_table}.{field}"


def encrypt_rows(apps: Any, schema_editor: Any) -> None:
    for model_name, field, _ in FIELDS:
        model = apps.get_model("payouts", model_name)
        for pk, plain in model.objects.values_list("pk", field).iterator():
            blob = payouts.fields.pii_encrypt(plain or "", aad=_aad(model, field))
            model.objects.filter(pk=pk).update(**{f"{field}_enc": blob})


def decrypt_rows(apps: Any, schema_editor: Any) -> None:
    for model_name, field, _ in FIELDS:
        model = apps.get_model("payouts", model_name)
        for pk, blob in model.objects.values_list("pk", f"{field}_enc").iterator():
            plain = payouts.fields.pii_decrypt(blob, aad=_aad(model, field)) if blob else ""
            model.objects.filter(pk=pk).update(**{field: plain})


def constraints_immediate(apps: Any, schema_editor: Any) -> None:
    """Fire the deferred foreign-key checks of the updates now: PostgreSQL refuses to
    ALTER a table with pending trigger events in the same transaction."""
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("SET CONSTRAINTS ALL IMMEDIATE")


class Migration(migrations.Migration):
    dependencies = [("payouts", "0004_query_holds")]

    operations = [
        *[
            migrations.AddField(
                model_name=model_name,
                name=f"{field}_enc",
                field=models.BinaryField(null=True, editable=False),
            )
            for model_name, field, _ in FIELDS
        ],
        # Nullable while both exist, so the reverse can re-add the column before filling it.
        *[
            migrations.AlterField(
                model_name=model_name,
                name=field,
                field=models.CharField(max_length=length, null=True),
            )
            for model_name, field, length in FIELDS
        ],
        migrations.RunPython(constraints_immediate, constraints_immediate),
        migrations.RunPython(encrypt_rows, decrypt_rows),
        migrations.RunPython(constraints_immediate, constraints_immediate),
        *[
            migrations.RemoveField(model_name=model_name, name=field)
            for model_name, field, _ in FIELDS
        ],
        *[
            migrations.RenameField(model_name=model_name, old_name=f"{field}_enc", new_name=field)
            for model_name, field, _ in FIELDS
        ],
        *[
            migrations.AlterField(
                model_name=model_name,
                name=field,
                field=payouts.fields.EncryptedTextField(),
            )
            for model_name, field, _ in FIELDS
        ],
    ]
