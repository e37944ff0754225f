"""Consent records are append-only in the database, whatever the client.

The pool's membership (``pool._excluded``) assumes a consent record is never deleted
and that only its withdrawal can change: a deleted or rewritten record would put a
withdrawn or erased contributor back in the pool without an audit event. A trigger on
PostgreSQL refuses DELETE, and UPDATE of anything but closing an open consent
(``withdrawn_at`` from NULL to a time). Test flushes use TRUNCATE, which row triggers
do not see. SQLite (local development only) has no trigger: its test flush deletes rows.
"""

from django.db import migrations

FORWARD = """
CREATE OR REPLACE FUNCTION datasets_consent_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'consent records are never deleted (consent %)', OLD.id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF NEW.id IS DISTINCT FROM OLD.id
        OR NEW.contributor_id IS DISTINCT FROM OLD.contributor_id
        OR NEW.dataset_id IS DISTINCT FROM OLD.dataset_id
        OR NEW.terms_version IS DISTINCT FROM OLD.terms_version
        OR NEW.given_at IS DISTINCT FROM OLD.given_at
        OR (OLD.withdrawn_at IS NOT NULL AND NEW.withdrawn_at IS DISTINCT FROM OLD.withdrawn_at)
    THEN
        RAISE EXCEPTION 'only the withdrawal of an open consent may change (consent %)', OLD.id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER datasets_consent_append_only
    BEFORE UPDATE OR DELETE ON datasets_consent
    FOR EACH ROW EXECUTE FUNCTION datasets_consent_append_only();
"""

REVERSE = """
DROP TRIGGER IF EXISTS datasets_consent_append_only ON datasets_consent;
DROP FUNCTION IF EXISTS datasets_consent_append_only();
"""


def forward(apps: object, schema_editor: object) -> None:
    if schema_editor.connection.vendor == "postgresql":  # type: ignore[attr-defined]
        schema_editor.execute(FORWARD, params=None)  # type: ignore[attr-defined]


def reverse(apps: object, schema_editor: object) -> None:
    if schema_editor.connection.vendor == "postgresql":  # type: ignore[attr-defined]
        schema_editor.execute(REVERSE, params=None)  # type: ignore[attr-defined]


class Migration(migrations.Migration):
    dependencies = [("datasets", "0006_segment_provenance")]

    operations = [migrations.RunPython(forward, reverse)]
