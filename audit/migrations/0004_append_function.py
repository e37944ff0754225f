"""PostgreSQL: append an event in one round trip, under the append lock.

`audit_append` takes the transaction-scoped advisory lock, reads the head in a fresh snapshot
(a VOLATILE PL/pgSQL function takes one per statement under READ COMMITTED), splices the
sequence number and the time into the canonical entry that Python encoded around them,
hashes it exactly as audit/chain.py does and inserts the row. SQLite uses the Python path.
"""

from django.db import migrations

FUNCTION = """
CREATE OR REPLACE FUNCTION audit_append(
    p_lock bigint, p_before_at text, p_before_seq text, p_after_seq text,
    p_role text, p_actor text, p_action text, p_subject text, p_dataset text, p_payload jsonb
) RETURNS TABLE(id bigint, seq bigint, at timestamptz, entry text, prev_hash text, hash text)
AS $$
DECLARE
    v_id bigint;
    v_seq bigint;
    v_prev text;
    v_at timestamptz;
    v_entry text;
    v_hash text;
BEGIN
    PERFORM pg_advisory_xact_lock(p_lock);
    SELECT e.seq, e.hash INTO v_seq, v_prev FROM audit_auditevent e ORDER BY e.seq DESC LIMIT 1;
    IF v_seq IS NULL THEN
        v_seq := 0;
        v_prev := repeat('0', 64);
    END IF;
    v_seq := v_seq + 1;
    v_at := date_trunc('microseconds', clock_timestamp());
    v_entry := p_before_at
        || to_char(v_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
        || p_before_seq || v_seq::text || p_after_seq;
    v_hash := encode(
        sha256(decode(v_prev, 'hex') || sha256(decode('00', 'hex') || convert_to(v_entry, 'UTF8'))),
        'hex'
    );
    INSERT INTO audit_auditevent
        (seq, at, actor_role, actor_id, action, subject, dataset, payload, entry, prev_hash, hash)
    VALUES
        (v_seq, v_at, p_role, p_actor, p_action, p_subject, p_dataset, p_payload, v_entry, v_prev, v_hash)
    RETURNING audit_auditevent.id INTO v_id;
    RETURN QUERY SELECT v_id, v_seq, v_at, v_entry, v_prev, v_hash;
END;
$$ LANGUAGE plpgsql VOLATILE;
"""


def create_function(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FUNCTION, params=None)


def drop_function(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            "DROP FUNCTION IF EXISTS audit_append(bigint, text, text, text, text, text, text, text, text, jsonb);"
        )


class Migration(migrations.Migration):

    dependencies = [
        ("audit", "0003_append_only_triggers"),
    ]

    operations = [
        migrations.RunPython(create_function, drop_function),
    ]
