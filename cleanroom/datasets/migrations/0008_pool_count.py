"""An exact pool size per dataset, kept by the database (the catalog reads one row).

Membership of contributor c in dataset d: an open consent of c to d on d's current terms
version, and at least one contribution of c in d (a destroyed data key implies neither:
erasure closes the consents in the same transaction, its job deletes the contributions,
and a later upload makes a new key). Triggers keep ``datasets_poolcount.members`` equal to
that count on every write that can change it:

- consent opened (INSERT) or closed (``withdrawn_at`` set; nothing else may change, 0007);
- a contributor's first contribution in d (BEFORE INSERT: earlier rows of the same
  statement are visible, so a bulk insert counts a contributor once) or their last one
  deleted (BEFORE DELETE, likewise);
- the dataset's terms version changed: recounted.

Every trigger first locks the dataset's counter row, then decides from fresh reads (each
statement of a volatile plpgsql function takes a new snapshot), so a concurrent terms
change and consent cannot both miss each other. Consent records are never deleted (0007).
SQLite (local development) has no triggers: ``selectors.pool_size`` counts there.
"""

from typing import Any

import django.db.models.deletion
from django.db import migrations, models


FORWARD = """
CREATE OR REPLACE FUNCTION datasets_pool_lock(d bigint) RETURNS void AS $$
BEGIN
    INSERT INTO datasets_poolcount (dataset_id, members) VALUES (d, 0)
        ON CONFLICT (dataset_id) DO NOTHING;
    PERFORM 1 FROM datasets_poolcount WHERE dataset_id = d FOR UPDATE;
END;
$$ LANGUAGE plpgsql VOLATILE;

CREATE OR REPLACE FUNCTION datasets_pool_current(d bigint, c bigint) RETURNS boolean AS $$
    SELECT EXISTS (
        SELECT 1 FROM datasets_consent k JOIN datasets_dataset s ON s.id = k.dataset_id
        WHERE k.dataset_id = d AND k.contributor_id = c AND k.withdrawn_at IS NULL
            AND k.terms_version = s.terms_version
    );
$$ LANGUAGE sql VOLATILE;

CREATE OR REPLACE FUNCTION datasets_pool_holds(d bigint, c bigint, other_than bigint)
RETURNS boolean AS $$
    SELECT EXISTS (
        SELECT 1 FROM datasets_contribution
        WHERE dataset_id = d AND contributor_id = c AND id IS DISTINCT FROM other_than
    );
$$ LANGUAGE sql VOLATILE;

CREATE OR REPLACE FUNCTION datasets_pool_consent() RETURNS trigger AS $$
BEGIN
    PERFORM datasets_pool_lock(NEW.dataset_id);
    IF TG_OP = 'INSERT' THEN
        IF NEW.withdrawn_at IS NULL
            AND NEW.terms_version = (SELECT terms_version FROM datasets_dataset
                                     WHERE id = NEW.dataset_id)
            AND datasets_pool_holds(NEW.dataset_id, NEW.contributor_id, NULL)
        THEN
            UPDATE datasets_poolcount SET members = members + 1
                WHERE dataset_id = NEW.dataset_id;
        END IF;
    ELSIF OLD.withdrawn_at IS NULL AND NEW.withdrawn_at IS NOT NULL
        AND OLD.terms_version = (SELECT terms_version FROM datasets_dataset
                                 WHERE id = OLD.dataset_id)
        AND datasets_pool_holds(OLD.dataset_id, OLD.contributor_id, NULL)
    THEN
        UPDATE datasets_poolcount SET members = members - 1 WHERE dataset_id = OLD.dataset_id;
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION datasets_pool_contribution() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM datasets_pool_lock(NEW.dataset_id);
        IF NOT datasets_pool_holds(NEW.dataset_id, NEW.contributor_id, NULL)
            AND datasets_pool_current(NEW.dataset_id, NEW.contributor_id)
        THEN
            UPDATE datasets_poolcount SET members = members + 1
                WHERE dataset_id = NEW.dataset_id;
        END IF;
        RETURN NEW;
    END IF;
    PERFORM datasets_pool_lock(OLD.dataset_id);
    IF NOT datasets_pool_holds(OLD.dataset_id, OLD.contributor_id, OLD.id)
        AND datasets_pool_current(OLD.dataset_id, OLD.contributor_id)
    THEN
        UPDATE datasets_poolcount SET members = members - 1 WHERE dataset_id = OLD.dataset_id;
    END IF;
    RETURN OLD;
END;
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION datasets_pool_recount(d bigint) RETURNS void AS $$
BEGIN
    PERFORM datasets_pool_lock(d);
    UPDATE datasets_poolcount SET members = (
        SELECT count(*) FROM datasets_consent k JOIN datasets_dataset s ON s.id = k.dataset_id
        WHERE k.dataset_id = d AND k.withdrawn_at IS NULL
            AND k.terms_version = s.terms_version
            AND EXISTS (SELECT 1 FROM datasets_contribution x
                        WHERE x.dataset_id = d AND x.contributor_id = k.contributor_id)
    ) WHERE dataset_id = d;
END;
$$ LANGUAGE plpgsql VOLATILE;

CREATE OR REPLACE FUNCTION datasets_pool_terms() RETURNS trigger AS $$
BEGIN
    PERFORM datasets_pool_recount(NEW.id);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER datasets_pool_consent
    AFTER INSERT OR UPDATE ON datasets_consent
    FOR EACH ROW EXECUTE FUNCTION datasets_pool_consent();
CREATE TRIGGER datasets_pool_contribution
    BEFORE INSERT OR DELETE ON datasets_contribution
    FOR EACH ROW EXECUTE FUNCTION datasets_pool_contribution();
CREATE TRIGGER datasets_pool_terms
    AFTER UPDATE OF terms_version ON datasets_dataset
    FOR EACH ROW WHEN (OLD.terms_version IS DISTINCT FROM NEW.terms_version)
    EXECUTE FUNCTION datasets_pool_terms();

SELECT datasets_pool_recount(id) FROM datasets_dataset;
"""

REVERSE = """
DROP TRIGGER IF EXISTS datasets_pool_terms ON datasets_dataset;
DROP TRIGGER IF EXISTS datasets_pool_contribution ON datasets_contribution;
DROP TRIGGER IF EXISTS datasets_pool_consent ON datasets_consent;
DROP FUNCTION IF EXISTS datasets_pool_terms();
DROP FUNCTION IF EXISTS datasets_pool_recount(bigint);
DROP FUNCTION IF EXISTS datasets_pool_contribution();
DROP FUNCTION IF EXISTS datasets_pool_consent();
DROP FUNCTION IF EXISTS datasets_pool_holds(bigint, bigint, bigint);
DROP FUNCTION IF EXISTS datasets_pool_current(bigint, bigint);
DROP FUNCTION IF EXISTS datasets_pool_lock(bigint);
"""


def forward(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FORWARD, params=None)


def reverse(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(REVERSE, params=None)


class Migration(migrations.Migration):
    dependencies = [
        ("datasets", "0007_consent_append_only"),
    ]

    operations = [
        migrations.CreateModel(
            name="PoolCount",
            fields=[
                (
                    "dataset",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="pool_count",
                        serialize=False,
                        to="datasets.dataset",
                    ),
                ),
                ("members", models.BigIntegerField(default=0)),
            ],
            options={
                "constraints": [
                    models.CheckConstraint(
                        condition=models.Q(("members__gte", 0)), name="pool_count_not_negative"
                    )
                ],
            },
        ),
        migrations.RunPython(forward, reverse),
    ]
