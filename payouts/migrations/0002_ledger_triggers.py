"""Database guards of the ledger on PostgreSQL (other databases rely on the service checks).

- Zero-sum: a DEFERRABLE INITIALLY DEFERRED constraint trigger checks, at commit, that
  the postings of every journal entry touched sum to zero per currency. Consecutive
  postings of one entry are checked once per transaction (a transaction-local marker),
  so a settlement entry with a million lines costs one SUM, not a million.
- Immutable: journal entries, postings and pool memberships refuse UPDATE and DELETE;
  a distribution may only have its settlement set once (NULL -> id), nothing else.
"""

from typing import Any

from django.db import migrations

FORWARD = r"""
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

CREATE OR REPLACE FUNCTION payouts_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused (corrections are new entries)', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'integrity_constraint_violation';
END
$$;

CREATE TRIGGER payouts_journalentry_append_only BEFORE UPDATE OR DELETE ON payouts_journalentry
    FOR EACH ROW EXECUTE FUNCTION payouts_append_only();
CREATE TRIGGER payouts_posting_append_only BEFORE UPDATE OR DELETE ON payouts_posting
    FOR EACH ROW EXECUTE FUNCTION payouts_append_only();
CREATE TRIGGER payouts_poolmembership_append_only BEFORE UPDATE OR DELETE ON payouts_poolmembership
    FOR EACH ROW EXECUTE FUNCTION payouts_append_only();

CREATE OR REPLACE FUNCTION payouts_distribution_settle_once() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.settlement_id IS NULL
       AND (to_jsonb(NEW) - 'settlement_id') = (to_jsonb(OLD) - 'settlement_id') THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'payouts_distribution is immutable: % refused (only its settlement is set, once)', TG_OP
        USING ERRCODE = 'integrity_constraint_violation';
END
$$;

CREATE TRIGGER payouts_distribution_settle_once BEFORE UPDATE OR DELETE ON payouts_distribution
    FOR EACH ROW EXECUTE FUNCTION payouts_distribution_settle_once();
"""

REVERSE = r"""
DROP TRIGGER IF EXISTS payouts_distribution_settle_once ON payouts_distribution;
DROP FUNCTION IF EXISTS payouts_distribution_settle_once();
DROP TRIGGER IF EXISTS payouts_poolmembership_append_only ON payouts_poolmembership;
DROP TRIGGER IF EXISTS payouts_posting_append_only ON payouts_posting;
DROP TRIGGER IF EXISTS payouts_journalentry_append_only ON payouts_journalentry;
DROP FUNCTION IF EXISTS payouts_append_only();
DROP TRIGGER IF EXISTS payouts_posting_zero_sum ON payouts_posting;
DROP FUNCTION IF EXISTS payouts_posting_zero_sum();
"""


class PostgresRunSQL(migrations.RunSQL):
    """RunSQL that only runs on PostgreSQL (SQLite, the zero-setup default, has no plpgsql)."""

    def database_forwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        if schema_editor.connection.vendor == "postgresql":
            super().database_forwards(app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        if schema_editor.connection.vendor == "postgresql":
            super().database_backwards(app_label, schema_editor, from_state, to_state)


class Migration(migrations.Migration):
    dependencies = [("payouts", "0001_ledger")]

    operations = [PostgresRunSQL(FORWARD, REVERSE)]
