"""SQLite: let a whole-table wipe through (test teardown flushes with DELETE FROM), refuse
any other DELETE.

SQLite triggers are per row and cannot see the statement, so the rule is "only the oldest
remaining row may go": a full wipe removes rows oldest first and passes; deleting any entry in
the middle or at the tail is refused. Removing a prefix is still possible and the verifier
reports it ("entry 1 is missing"). PostgreSQL keeps refusing every row DELETE (its flush uses
TRUNCATE, which is a privilege matter).
"""

from django.db import migrations

TABLES = ["audit_auditevent", "audit_auditcheckpoint", "audit_auditnode"]


def oldest_first(apps, schema_editor):
    if schema_editor.connection.vendor != "sqlite":
        return
    for table in TABLES:
        schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_no_delete;")
        schema_editor.execute(
            f"CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table} "
            f"WHEN OLD.rowid <> (SELECT MIN(rowid) FROM {table}) "
            f"BEGIN SELECT RAISE(ABORT, 'the audit log is append-only: DELETE on {table} refused'); END;"
        )


def refuse_all(apps, schema_editor):
    if schema_editor.connection.vendor != "sqlite":
        return
    for table in TABLES:
        schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_no_delete;")
        schema_editor.execute(
            f"CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table} "
            f"BEGIN SELECT RAISE(ABORT, 'the audit log is append-only: DELETE on {table} refused'); END;"
        )


class Migration(migrations.Migration):

    dependencies = [
        ("audit", "0004_append_function"),
    ]

    operations = [
        migrations.RunPython(oldest_first, refuse_all),
    ]
