"""Zero-sum check per entry touched by a statement, not per posting row.

A settlement batch inserts hundreds of thousands of postings in one COPY; a deferred
constraint trigger per posting row cost ~13 us each at commit. Now a statement-level
trigger (with its transition table, so COPY fires it too) records each entry the
statement touched in ``payouts_entry_check``, and the DEFERRABLE INITIALLY DEFERRED
constraint trigger on that table checks, at commit, that the entry's postings sum to
zero per currency (then removes its row). One check per entry per statement.
"""

from typing import Any

from django.db import migrations

FORWARD = r"""
DROP TRIGGER IF EXISTS payouts_posting_zero_sum ON payouts_posting;
DROP FUNCTION IF EXISTS payouts_posting_zero_sum();

CREATE TABLE payouts_entry_check (
    id bigserial PRIMARY KEY,
    entry_id bigint NOT NULL
);

CREATE OR REPLACE FUNCTION payouts_posting_touched() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO payouts_entry_check (entry_id) SELECT DISTINCT entry_id FROM touched;
    RETURN NULL;
END
$$;

CREATE TRIGGER payouts_posting_touched
    AFTER INSERT ON payouts_posting
    REFERENCING NEW TABLE AS touched
    FOR EACH STATEMENT EXECUTE FUNCTION payouts_posting_touched();

CREATE OR REPLACE FUNCTION payouts_entry_zero_sum() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    bad record;
BEGIN
    SELECT currency, SUM(amount) AS total INTO bad
      FROM payouts_posting WHERE entry_id = NEW.entry_id
     GROUP BY currency HAVING SUM(amount) <> 0 LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'journal entry % is unbalanced: its % postings sum to %',
            NEW.entry_id, bad.currency, bad.total
            USING ERRCODE = 'check_violation', CONSTRAINT = 'payouts_entry_zero_sum';
    END IF;
    DELETE FROM payouts_entry_check WHERE id = NEW.id;
    RETURN NULL;
END
$$;

CREATE CONSTRAINT TRIGGER payouts_entry_zero_sum
    AFTER INSERT ON payouts_entry_check
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION payouts_entry_zero_sum();
"""

REVERSE = r"""
DROP TRIGGER IF EXISTS payouts_entry_zero_sum ON payouts_entry_check;
DROP FUNCTION IF EXISTS payouts_entry_zero_sum();
DROP TRIGGER IF EXISTS payouts_posting_touched ON payouts_posting;
DROP FUNCTION IF EXISTS payouts_posting_touched();
DROP TABLE IF EXISTS payouts_entry_check;

CREATE OR REPLACE FUNCTION payouts_posting_zero_sum() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    marker text := txid_current()::text || ':' || NEW.entry_id::text;
    bad record;
BEGIN
    IF current_setting('payouts.zero_sum_checked', true) = marker THEN
        RETURN NULL;
    END IF;
    SELECT currency, SUM(amount) AS total INTO bad
      FROM payouts_posting WHERE entry_id = NEW.entry_id
     GROUP BY currency HAVING SUM(amount) <> 0 LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'journal entry % is unbalanced: its % postings sum to %',
            NEW.entry_id, bad.currency, bad.total
            USING ERRCODE = 'check_violation', CONSTRAINT = 'payouts_posting_zero_sum';
    END IF;
    PERFORM set_config('payouts.zero_sum_checked', marker, true);
    RETURN NULL;
END
$$;

CREATE CONSTRAINT TRIGGER payouts_posting_zero_sum
    AFTER INSERT ON payouts_posting
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION payouts_posting_zero_sum();
"""


class PostgresRunSQL(migrations.RunSQL):
    """RunSQL that only runs on PostgreSQL (SQLite, the zero-setup default, has no plpgsql)."""

    def database_forwards(
        self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any
    ) -> None:
        if schema_editor.connection.vendor == "postgresql":
            super().database_forwards(app_label, schema_editor, from_state, to_state)

    def database_backwards(
        self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any
    ) -> None:
        if schema_editor.connection.vendor == "postgresql":
            super().database_backwards(app_label, schema_editor, from_state, to_state)


class Migration(migrations.Migration):
    dependencies = [("payouts", "0002_ledger_triggers")]

    operations = [PostgresRunSQL(FORWARD, REVERSE)]
