"""Datasets, consent, contributions, compaction, erasure and key rotation.

Invariants kept here (each one has tests that try to break it):

- A refused request changes nothing: every service validates first and writes in
  one transaction, with its audit event in the same transaction.
- A dataset's schema cannot change once it holds data (publish a new dataset).
  A change to purpose, policy, price or retention that takes something from
  contributors (more privacy loss, wider use, less pay, longer keeping) bumps
  ``terms_version``; consents stay tied to the version they agreed to and only current
  ones count for the pool. A change that only protects contributors more keeps the
  version (and the pool). ``dataset_update_plan`` says which is which before anything
  changes.
- An upload is all-or-nothing and only from a contributor whose open consent is on
  the current terms; the rows a contributor holds in a dataset never exceed the
  policy's ``max_rows_per_contributor``.
- Contributed values exist only encrypted (see ``storage``/``crypto``); compaction
  copies each contribution into exactly one place of the pool segments
  (``Contribution.is_compacted`` flips in the same transaction). Uploads are compacted
  in batches (a job once enough wait, and a periodic one), and read one by one until then.
- Erasure destroys the data key and withdraws consent at once (the next snapshot
  excludes the contributor); its job then deletes the contributions and rewrites
  every pool segment that held their rows. Earnings (payouts) are not touched.
  What crypto-shredding (destroying the key) covers, and what it does not:
  it makes every ``Contribution`` of the contributor unreadable at once (their uploads
  are encrypted only under their data key), including copies in database backups.
  It does NOT cover their rows in compacted ``PoolSegment`` files: a segment is
  encrypted under its own segment key (wrapped by the KEK), so those rows stay readable
  to anyone holding the KEK until the purge job rewrites the segments (and in backups
  of MEDIA_ROOT taken before that). No query sees them meanwhile (membership comes from
  consent, closed in the same transaction), but the erasure is complete only when the
  job marks it ``done``. Hence the job retries transient failures with backoff
  (``tasks.contributor_erase_task``) and a periodic reaper (``erasures_resume``, beat
  entry ``datasets-erasure-reaper``) queues again any erasure pending past
  ``ERASURE_STUCK_AFTER``; ``pending`` is never a final state.
- Uploads older than the dataset's ``retention_days`` are deleted, with their rows in
  the pool segments (found by the segments' provenance column), by a daily job.
- Key rotation re-wraps keys under the current KEK; records are never re-encrypted.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import IO, Any

import numpy as np
import polars as pl
import pyarrow as pa
from django.db import connection, transaction
from django.db.models import Count, Sum
from django.utils import timezone

from audit.services import audit_record
from cleanroom.accounts.models import Contributor, User
from cleanroom.datasets import storage, validation
from cleanroom.datasets.faults import fault_point
from cleanroom.datasets.models import (
    Consent,
    Contribution,
    ContributorKey,
    Dataset,
    Erasure,
    PoolSegment,
)
from cleanroom.errors import Conflict, Forbidden, NotFound, ValidationFailed
from cleanroom.numbers import decimal_number
from payouts.crash import crash_point

# Pool segments are rewritten into pieces of at most this many rows; small segments
# (from recent uploads) are merged once there are more than SMALL_SEGMENTS_MAX of them,
# so a snapshot always decrypts a handful of blobs.
SEGMENT_ROWS = 1 << 20
SMALL_SEGMENT_ROWS = 1 << 16
SMALL_SEGMENTS_MAX = 8
# Uploads wait to be compacted in batches: a job is queued once this many uploads (or
# rows) are waiting, and the periodic job picks up the rest. Every snapshot decrypts the
# waiting uploads one by one, so these bound its extra cost.
COMPACT_AFTER_UPLOADS = 32
COMPACT_AFTER_ROWS = 50_000
TERMS_FIELDS = ("purpose", "policy", "price", "retention_days")


# ---------------------------------------------------------------- datasets


@transaction.atomic
def dataset_create(
    *,
    actor: User,
    slug: str,
    name: str,
    purpose: str,
    schema: Any,
    policy: Any,
    price: Any,
    retention_days: int = 365,
) -> Dataset:
    """Publish a dataset (compliance)."""
    slug = validation.slug_clean(slug)
    if not name.strip() or not purpose.strip():
        raise ValidationFailed("name and purpose are required.")
    clean_schema = validation.schema_clean(schema)
    clean_policy = validation.policy_clean(policy, schema=clean_schema)
    clean_price = validation.price_clean(price)
    _check_retention(retention_days)
    if Dataset.objects.filter(slug=slug).exists():
        raise Conflict(f"A dataset named {slug!r} already exists.")
    dataset = Dataset.objects.create(
        slug=slug,
        name=name.strip(),
        purpose=purpose.strip(),
        schema=clean_schema,
        policy=clean_policy,
        price=clean_price,
        retention_days=retention_days,
        total_epsilon=Decimal(clean_policy["total_epsilon"]),
        total_delta=validation.policy_total_delta(clean_policy),
    )
    audit_record(
        action="cleanroom.dataset.created",
        actor=actor,
        subject=f"dataset:{slug}",
        dataset=slug,
        payload={
            "terms_version": dataset.terms_version,
            "schema": clean_schema,
            "policy": clean_policy,
            "price": clean_price,
            "retention_days": retention_days,
        },
    )
    return dataset


def _check_retention(retention_days: Any) -> None:
    if (
        isinstance(retention_days, bool)
        or not isinstance(retention_days, int)
        or not 1 <= retention_days <= 36500
    ):
        raise ValidationFailed("retention_days must be a whole number of days from 1 to 36500.")


# Which changes take something from contributors (more privacy loss, wider use, less pay,
# longer keeping) and so need their consent again; a change that only protects them more
# keeps the terms version, and the pool with it. Absent optional keys mean "no limit"
# for the LIMITS below; for the rest, an added or removed key counts as a loosening.
LOOSER_IF_HIGHER = (
    "total_epsilon",
    "max_query_epsilon",
    "max_rows_per_contributor",
    "max_groups",
    "max_histogram_bins",
    "delta",
    "total_delta",
    "default_privacy_cap",
    "max_epsilon_per_organization",
)
LOOSER_IF_LOWER = ("min_contributors", "max_contributors")
LIMITS = (
    "default_privacy_cap",
    "max_epsilon_per_organization",
    "allowed_organizations",
    "allowed_columns",
    "allowed_aggregates",
)
LISTS = ("allowed_organizations", "allowed_columns", "allowed_aggregates")


def _number_or_none(value: Any) -> Decimal | None:
    try:
        return None if value is None else Decimal(str(value))
    except InvalidOperation:
        return None


def _policy_key_change(key: str, old: Any, new: Any) -> tuple[bool, str]:
    """(needs new consent, why) for one policy key going from ``old`` to ``new``."""
    if old is None and key in LIMITS:
        return False, "a new limit only protects contributors more"
    if new is None:
        return True, "removing it lifts a limit contributors agreed to"
    if key in LISTS:
        added = sorted(set(map(str, new)) - set(map(str, old or [])))
        if old is None or added:
            return True, f"widens it to {', '.join(added) or 'everything'}"
        return False, "narrows it"
    if key in ("auto_approve", "private_keys"):
        if new is True and old is not True:
            reason = (
                "queries run without a compliance review"
                if key == "auto_approve"
                else "group keys that are not public may be released (under a threshold)"
            )
            return True, reason
        return False, "more protective"
    before, after = _number_or_none(old), _number_or_none(new)
    if before is None or after is None:
        return True, "changes what contributors agreed to"
    if key in LOOSER_IF_HIGHER:
        return (after > before, "raises it" if after > before else "lowers it")
    if key in LOOSER_IF_LOWER:
        return (after < before, "lowers it" if after < before else "raises it")
    return True, "changes what contributors agreed to"


def _price_key_change(key: str, old: Any, new: Any) -> tuple[bool, str]:
    if key == "currency":
        return True, "contributors are paid in another currency"
    before, after = _number_or_none(old), _number_or_none(new)
    if before is None or after is None:
        return True, "changes what contributors agreed to"
    if key == "platform_fee":
        return (after > before, "contributors' share shrinks" if after > before else "grows")
    return (after < before, "contributors are paid less" if after < before else "paid more")


def _change(field: str, old: Any, new: Any, needs: bool, why: str) -> dict[str, Any]:
    return {"field": field, "from": old, "to": new, "needs_reconsent": needs, "why": why}


def _changes(dataset: Dataset, updates: dict[str, Any]) -> list[dict[str, Any]]:
    """The diff a policy editor shows: one entry per changed field (policy and price keys
    one by one), each saying whether contributors must consent again and why."""
    out: list[dict[str, Any]] = []
    for field, value in updates.items():
        old = getattr(dataset, field)
        if field in ("total_epsilon", "total_delta") or old == value:
            continue  # budget columns mirror the policy's keys
        if field in ("policy", "price"):
            judge = _policy_key_change if field == "policy" else _price_key_change
            for key in sorted(set(old) | set(value)):
                if old.get(key) != value.get(key):
                    needs, why = judge(key, old.get(key), value.get(key))
                    out.append(_change(f"{field}.{key}", old.get(key), value.get(key), needs, why))
        elif field == "name":
            out.append(_change(field, old, value, False, "a display name only"))
        elif field == "retention_days":
            longer = int(value) > int(old)
            why = "data is kept longer" if longer else "data is kept for less time"
            out.append(_change(field, old, value, longer, why))
        else:
            why = f"the {field} contributors agreed to changes"
            before, after = (old, value) if field == "purpose" else ("(old)", "(new)")
            out.append(_change(field, before, after, True, why))
    return out


def _policy_merged(current: dict[str, Any], patch: Any) -> Any:
    """A partial policy merged over the current one; a key set to null is removed."""
    if not isinstance(patch, dict):
        return patch  # policy_clean names the problem
    merged = {**current, **patch}
    return {key: value for key, value in merged.items() if value is not None}


def _updates(dataset: Dataset, changes: dict[str, Any]) -> dict[str, Any]:
    """Validated new values for the dataset's fields (nothing written)."""
    unknown = set(changes) - {"name", "schema", *TERMS_FIELDS}
    if unknown:
        raise ValidationFailed(f"These fields cannot be changed: {', '.join(sorted(unknown))}.")
    updates: dict[str, Any] = {}
    if "name" in changes:
        if not str(changes["name"]).strip():
            raise ValidationFailed("name cannot be empty.")
        updates["name"] = str(changes["name"]).strip()
    if "purpose" in changes:
        if not str(changes["purpose"]).strip():
            raise ValidationFailed("purpose cannot be empty.")
        updates["purpose"] = str(changes["purpose"]).strip()
    if "schema" in changes:
        schema = validation.schema_clean(changes["schema"])
        if schema != dataset.schema:
            if Contribution.objects.filter(dataset=dataset).exists():
                raise Conflict(
                    "The schema cannot change once the dataset holds data; publish a new "
                    "dataset (a new version) with the new schema instead."
                )
            updates["schema"] = schema
    if "policy" in changes or "schema" in updates:
        # The policy names schema columns: check it against the schema it will apply to.
        policy = validation.policy_clean(
            _policy_merged(dataset.policy, changes.get("policy", {})),
            schema=updates.get("schema", dataset.schema),
        )
        total = Decimal(policy["total_epsilon"])
        if total < dataset.spent_epsilon:
            raise Conflict(
                f"policy.total_epsilon cannot be below the epsilon already spent "
                f"({dataset.spent_epsilon.normalize()})."
            )
        total_delta = validation.policy_total_delta(policy)
        if total_delta < dataset.spent_delta:
            raise Conflict(
                f"The policy's delta total ({total_delta.normalize():e}) cannot be below the "
                f"delta already spent ({dataset.spent_delta.normalize():e})."
            )
        updates["policy"] = policy
        updates["total_epsilon"] = total
        updates["total_delta"] = total_delta
    if "price" in changes:
        updates["price"] = validation.price_clean(changes["price"])
    if "retention_days" in changes:
        _check_retention(changes["retention_days"])
        updates["retention_days"] = changes["retention_days"]
    return {k: v for k, v in updates.items() if getattr(dataset, k) != v}


def dataset_update_plan(*, dataset: Dataset, changes: dict[str, Any]) -> dict[str, Any]:
    """What ``dataset_update`` would do, changing nothing (the API's ``?dry_run=1``).

    ``{changes: [{field, from, to, needs_reconsent, why}], needs_reconsent,
    contributors_leaving}``: the contributors now in the pool, who leave it until they
    consent to the new terms when any change needs that, else 0.
    """
    from cleanroom.datasets.selectors import pool_size

    updates = _updates(dataset, changes)
    diff = _changes(dataset, updates)
    needs = any(change["needs_reconsent"] for change in diff)
    return {
        "changes": diff,
        "needs_reconsent": needs,
        "contributors_leaving": pool_size(dataset=dataset) if needs else 0,
        "terms_version": dataset.terms_version + 1 if needs else dataset.terms_version,
    }


@transaction.atomic
def dataset_update(*, actor: User, dataset: Dataset, changes: dict[str, Any]) -> Dataset:
    """Change a dataset; a partial ``policy`` is merged (a null key removed).

    A change that takes something from contributors (see ``_policy_key_change``) bumps
    the terms version: consents on the old version stop counting until renewed. One
    that only protects them more keeps the version and the pool.
    """
    dataset = Dataset.objects.select_for_update().get(pk=dataset.pk)
    changed = _updates(dataset, changes)
    if not changed:
        return dataset
    diff = _changes(dataset, changed)
    reconsent = any(change["needs_reconsent"] for change in diff)
    if reconsent:
        changed["terms_version"] = dataset.terms_version + 1
    for key, value in changed.items():
        setattr(dataset, key, value)
    dataset.save()
    audit_record(
        action="cleanroom.dataset.updated",
        actor=actor,
        subject=f"dataset:{dataset.slug}",
        dataset=dataset.slug,
        payload={
            "fields": sorted(k for k in changed if k != "terms_version"),
            "terms_version": dataset.terms_version,
            "needs_reconsent": [c["field"] for c in diff if c["needs_reconsent"]],
            **{k: _jsonable(v) for k, v in changed.items() if k != "terms_version"},
        },
    )
    return dataset


def _jsonable(value: Any) -> Any:
    return str(value) if isinstance(value, Decimal) else value


# ---------------------------------------------------------------- consent


def privacy_cap_clean(value: Any) -> Decimal | None:
    """A personal cap as given at consent: ``{"epsilon": "2.0"}`` (per year) or None."""
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) != {"epsilon"}:
        raise ValidationFailed('privacy_cap must be an object {"epsilon": <number per year>}.')
    raw = value["epsilon"]
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise ValidationFailed("privacy_cap.epsilon must be a number.")
    try:
        cap = decimal_number(raw)  # ASCII digits only: Decimal() also reads "١٢"
    except InvalidOperation:
        raise ValidationFailed("privacy_cap.epsilon must be a number.") from None
    if not cap.is_finite() or cap <= 0 or cap >= Decimal(10**9):
        raise ValidationFailed("privacy_cap.epsilon must be a number greater than 0.")
    if cap.as_tuple().exponent < -12:  # type: ignore[operator]
        raise ValidationFailed("privacy_cap.epsilon has at most 12 decimal places.")
    return cap


@transaction.atomic
def consent_give(
    *, contributor: Contributor, dataset: Dataset, privacy_cap: Any = None
) -> tuple[Consent, bool]:
    """Consent to the dataset's current terms: (consent, created). Replaces an outdated one.

    ``privacy_cap`` (``{"epsilon": ...}`` per 365 days) sets the contributor's own cap; a
    consent with another cap is replaced by a new record (consents are append-only).
    """
    cap = privacy_cap_clean(privacy_cap)
    dataset = Dataset.objects.get(pk=dataset.pk)
    Contributor.objects.select_for_update().filter(pk=contributor.pk).first()
    if Erasure.objects.filter(contributor=contributor, status=Erasure.Status.PENDING).exists():
        # Their old rows may still sit in pool segments until the purge job finishes.
        raise Conflict("Your data is being erased; consent again once the erasure is complete.")
    current = Consent.objects.filter(
        contributor=contributor, dataset=dataset, withdrawn_at__isnull=True
    ).first()
    if (
        current is not None
        and current.terms_version == dataset.terms_version
        and (privacy_cap is None or current.privacy_cap == cap)
    ):
        return current, False
    if current is not None:
        # Consent to old terms is closed: the new record names the terms agreed to now.
        current.withdrawn_at = timezone.now()
        current.save(update_fields=["withdrawn_at"])
    if privacy_cap is None and current is not None:
        cap = current.privacy_cap  # new terms keep the cap the contributor chose
    consent = Consent.objects.create(
        contributor=contributor,
        dataset=dataset,
        terms_version=dataset.terms_version,
        privacy_cap=cap,
    )
    audit_record(
        action="cleanroom.consent.given",
        actor=contributor.user,
        subject=f"contributor:{contributor.pk}",
        dataset=dataset.slug,
        payload={
            "terms_version": dataset.terms_version,
            "replaces_terms_version": current.terms_version if current else None,
            "privacy_cap": str(cap) if cap is not None else None,
        },
    )
    return consent, True


@transaction.atomic
def consent_withdraw(*, contributor: Contributor, dataset: Dataset) -> Consent:
    """Withdraw: from now on no snapshot (so no query) includes this contributor's rows."""
    Contributor.objects.select_for_update().filter(pk=contributor.pk).first()
    consent = Consent.objects.filter(
        contributor=contributor, dataset=dataset, withdrawn_at__isnull=True
    ).first()
    if consent is None:
        raise NotFound(f"You have no consent to dataset {dataset.slug!r} to withdraw.")
    consent.withdrawn_at = timezone.now()
    consent.save(update_fields=["withdrawn_at"])
    audit_record(
        action="cleanroom.consent.withdrawn",
        actor=contributor.user,
        subject=f"contributor:{contributor.pk}",
        dataset=dataset.slug,
        payload={"terms_version": consent.terms_version},
    )
    return consent


# ---------------------------------------------------------------- contributions


def _upload_allowed(*, contributor: Contributor, dataset: Dataset) -> None:
    if Erasure.objects.filter(contributor=contributor, status=Erasure.Status.PENDING).exists():
        raise Conflict("Your data is being erased; upload again once the erasure is complete.")
    consent = Consent.objects.filter(
        contributor=contributor, dataset=dataset, withdrawn_at__isnull=True
    ).first()
    if consent is None:
        raise Forbidden(
            f"You have not consented to dataset {dataset.slug!r}; consent before uploading."
        )
    if consent.terms_version != dataset.terms_version:
        raise Forbidden(
            f"The terms of dataset {dataset.slug!r} changed (version {dataset.terms_version}); "
            "consent to the new terms before uploading."
        )


def _rows_held(*, contributor: Contributor, dataset: Dataset) -> int:
    return sum(
        Contribution.objects.filter(contributor=contributor, dataset=dataset).values_list(
            "rows", flat=True
        )
    )


def contribution_upload(
    *,
    contributor: Contributor,
    dataset: Dataset,
    records: Any = None,
    csv_file: IO[bytes] | None = None,
) -> Contribution:
    """Validate every row, then store the upload as one encrypted segment; all or nothing."""
    if (records is None) == (csv_file is None):
        raise ValidationFailed(
            'Send either JSON {"records": [...]} or a CSV file in the multipart field "file".'
        )
    dataset = Dataset.objects.get(pk=dataset.pk)
    # Cheap refusals first: no parsing of a large file for someone who may not upload.
    _upload_allowed(contributor=contributor, dataset=dataset)
    limit = int(dataset.policy["max_rows_per_contributor"])
    room = max(limit - _rows_held(contributor=contributor, dataset=dataset), 0)
    if room == 0:
        raise ValidationFailed(
            f"You already hold the maximum of {limit} rows in dataset {dataset.slug!r}.",
            errors=[{"row": None, "column": None, "message": "row limit reached"}],
        )
    if records is not None:
        table = validation.records_validate(schema=dataset.schema, records=records, max_rows=room)
    else:
        assert csv_file is not None
        table = validation.csv_validate(schema=dataset.schema, binary=csv_file, max_rows=room)
    return _contribution_store(contributor=contributor, dataset=dataset, table=table)


@transaction.atomic
def _contribution_store(
    *, contributor: Contributor, dataset: Dataset, table: pa.Table
) -> Contribution:
    # Lock the contributor: uploads, consent changes and erasure of one person serialize.
    contributor = (
        Contributor.objects.select_for_update().select_related("user").get(pk=contributor.pk)
    )
    dataset = Dataset.objects.get(pk=dataset.pk)
    _upload_allowed(contributor=contributor, dataset=dataset)
    if table.schema != storage.arrow_schema(dataset, with_contributor=False):
        raise Conflict("The dataset's schema changed during the upload; upload again.")
    limit = int(dataset.policy["max_rows_per_contributor"])
    held = _rows_held(contributor=contributor, dataset=dataset)
    if held + table.num_rows > limit:
        raise ValidationFailed(
            f"At most {limit} rows per contributor in dataset {dataset.slug!r}: you hold "
            f"{held} and sent {table.num_rows}.",
            errors=[{"row": limit - held + 1, "column": None, "message": "too many rows"}],
        )
    key = storage.data_key_for_write(contributor=contributor)
    contribution = Contribution.objects.create(
        dataset=dataset,
        contributor=contributor,
        rows=table.num_rows,
        ciphertext=storage.contribution_encrypt(
            key=key, dataset=dataset, contributor=contributor, table=table
        ),
    )
    audit_record(
        action="cleanroom.contribution.uploaded",
        actor=contributor.user,
        subject=f"contributor:{contributor.pk}",
        dataset=dataset.slug,
        payload={"contribution": contribution.pk, "rows": table.num_rows},
    )
    waiting = Contribution.objects.filter(dataset=dataset, is_compacted=False).aggregate(
        uploads=Count("pk"), rows=Sum("rows")
    )
    if waiting["uploads"] >= COMPACT_AFTER_UPLOADS or (waiting["rows"] or 0) >= COMPACT_AFTER_ROWS:
        from cleanroom.datasets.tasks import pool_compact_task

        dataset_pk = dataset.pk
        transaction.on_commit(lambda: pool_compact_task.delay(dataset_pk))
    return contribution


# ---------------------------------------------------------------- compaction


@contextmanager
def _pool_lock(dataset_pk: int) -> Iterator[None]:
    """Serialize writers of one dataset's segments (compaction, erasure) on PostgreSQL."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_advisory_xact_lock(%s, %s)",
                    [zlib.crc32(b"cleanroom.pool") & 0x7FFFFFFF, dataset_pk],
                )
        yield


def _segment_frame(dataset: Dataset, segment: PoolSegment) -> pl.DataFrame:
    return storage.segment_decrypt(
        dataset_pk=dataset.pk,
        kek_id=segment.kek_id,
        wrapped_key=segment.wrapped_key,
        file_name=segment.file_name,
    )


def _segments_write(dataset: Dataset, frame: pl.DataFrame) -> list[PoolSegment]:
    frame = frame.sort("contributor_id", maintain_order=True)
    written = []
    for start in range(0, frame.height, SEGMENT_ROWS):
        piece = frame.slice(start, SEGMENT_ROWS)
        contributors = piece.get_column("contributor_id").n_unique()
        segment = storage.segment_build(dataset=dataset, frame=piece, contributors=contributors)
        segment.save()
        written.append(segment)
    return written


# After compacting this many uploads at once, vacuum the contributions table: the
# partial index of waiting uploads (read by every snapshot) otherwise keeps pointing at
# the dead versions of the flipped rows until autovacuum comes by.
VACUUM_AFTER_UPLOADS = 10_000


def pools_compact() -> int:
    """Compact every dataset with waiting uploads (the periodic job); returns rows compacted."""
    waiting = (
        Contribution.objects.filter(is_compacted=False)
        .values_list("dataset_id", flat=True)
        .distinct()
    )
    return sum(pool_compact(dataset_pk=dataset_pk) for dataset_pk in sorted(set(waiting)))


def pool_compact(*, dataset_pk: int) -> int:
    """Copy uncompacted uploads into pool segments; returns the rows compacted (0: no-op)."""
    uploads, compacted = _pool_compact(dataset_pk)
    if (
        uploads >= VACUUM_AFTER_UPLOADS
        and connection.vendor == "postgresql"
        and not connection.in_atomic_block
    ):
        with connection.cursor() as cursor:
            cursor.execute("VACUUM (ANALYZE) datasets_contribution")
    return compacted


def _pool_compact(dataset_pk: int) -> tuple[int, int]:
    with _pool_lock(dataset_pk):
        dataset = Dataset.objects.filter(pk=dataset_pk).first()
        if dataset is None:
            return 0, 0
        pending = list(
            Contribution.objects.filter(dataset=dataset, is_compacted=False)
            .select_for_update()
            .order_by("contributor_id", "pk")
        )
        keys = {
            record.contributor_id: record
            for record in ContributorKey.objects.filter(
                contributor_id__in={c.contributor_id for c in pending}
            )
        }
        unwrapped: dict[int, bytes] = {}
        tables: list[pa.Table] = []
        owners: list[int] = []
        origins: list[int] = []
        for contribution in pending:
            record = keys.get(contribution.contributor_id)
            if record is None or record.wrapped is None:
                continue  # erased: the erasure job deletes these
            key = unwrapped.get(record.contributor_id)
            if key is None:
                key = unwrapped[record.contributor_id] = storage.data_key_unwrap(record)
            tables.append(storage.contribution_decrypt(key=key, contribution=contribution))
            owners.append(contribution.contributor_id)
            origins.append(contribution.pk)
        compacted = sum(table.num_rows for table in tables)
        if tables:
            # One columnar concatenation in Arrow, not one Polars frame per upload.
            combined = pa.concat_tables(tables).combine_chunks()
            counts = [table.num_rows for table in tables]
            ids = np.repeat(np.asarray(owners, dtype=np.int64), counts)
            sources = np.repeat(np.asarray(origins, dtype=np.int64), counts)
            combined = combined.add_column(0, storage.PROVENANCE, pa.array(sources))
            frame = pl.from_arrow(combined.add_column(0, "contributor_id", pa.array(ids)))
            assert isinstance(frame, pl.DataFrame)
            _segments_write(dataset, frame)
            crash_point("pool.compact.before_commit")  # segments written, uploads not flagged
            Contribution.objects.filter(pk__in=[c.pk for c in pending]).update(is_compacted=True)
        small = list(
            PoolSegment.objects.filter(dataset=dataset, rows__lt=SMALL_SEGMENT_ROWS).order_by("pk")
        )
        if len(small) > SMALL_SEGMENTS_MAX:
            merged = pl.concat([_segment_frame(dataset, segment) for segment in small])
            for segment in small:
                storage.segment_delete(segment)
            _segments_write(dataset, merged)
        storage.segments_sweep(dataset_pk=dataset.pk)
        return len(pending), compacted


# ---------------------------------------------------------------- erasure


@transaction.atomic
def contributor_erase_request(*, contributor: Contributor) -> Erasure:
    """Erase a contributor's data: key destroyed and consents closed now, rows purged by a job."""
    contributor = (
        Contributor.objects.select_for_update().select_related("user").get(pk=contributor.pk)
    )
    pending = Erasure.objects.filter(contributor=contributor, status=Erasure.Status.PENDING)
    existing = pending.first()
    if existing is not None:
        return existing
    now = timezone.now()
    withdrawn = list(
        Consent.objects.filter(contributor=contributor, withdrawn_at__isnull=True).select_related(
            "dataset"
        )
    )
    for consent in withdrawn:
        consent.withdrawn_at = now
        consent.save(update_fields=["withdrawn_at"])
        audit_record(
            action="cleanroom.consent.withdrawn",
            actor=contributor.user,
            subject=f"contributor:{contributor.pk}",
            dataset=consent.dataset.slug,
            payload={"terms_version": consent.terms_version, "reason": "erasure"},
        )
    ContributorKey.objects.filter(contributor=contributor).update(
        wrapped=None, kek_id="", destroyed_at=now
    )
    erasure = Erasure.objects.create(contributor=contributor)
    audit_record(
        action="cleanroom.contributor.erased",
        actor=contributor.user,
        subject=f"contributor:{contributor.pk}",
        payload={"erasure": erasure.pk, "stage": "requested", "data_key": "destroyed"},
    )
    from cleanroom.datasets.tasks import contributor_erase_task

    erasure_pk = erasure.pk
    transaction.on_commit(lambda: contributor_erase_task.delay(erasure_pk))
    return erasure


def contributor_erase_run(*, erasure_pk: int) -> bool:
    """Purge an erased contributor's rows from contributions and every pool segment.

    Idempotent: a redelivered task finds the erasure done (or finds nothing left to purge).
    """
    erasure = Erasure.objects.filter(pk=erasure_pk).first()
    if erasure is None or erasure.status == Erasure.Status.DONE:
        return False
    fault_point("erasure.purge")
    contributor_pk = erasure.contributor_id
    # Each dataset is purged in one transaction (contributions and segments together), so
    # a dataset without the contributor's contributions holds none of their rows either.
    dataset_pks = set(
        Contribution.objects.filter(contributor_id=contributor_pk).values_list(
            "dataset_id", flat=True
        )
    )
    removed = 0
    for dataset_pk in sorted(dataset_pks):
        with _pool_lock(dataset_pk):
            dataset = Dataset.objects.get(pk=dataset_pk)
            removed += Contribution.objects.filter(
                dataset=dataset, contributor_id=contributor_pk
            ).delete()[0]
            for segment in PoolSegment.objects.filter(dataset=dataset).order_by("pk"):
                frame = _segment_frame(dataset, segment)
                remaining = frame.filter(pl.col("contributor_id") != contributor_pk)
                if remaining.height == frame.height:
                    continue
                storage.segment_delete(segment)
                crash_point("erasure.purge.before_commit")  # a segment gone, its rest not yet
                if remaining.height:
                    _segments_write(dataset, remaining)
            storage.segments_sweep(dataset_pk=dataset_pk)
    with transaction.atomic():
        claimed = Erasure.objects.filter(pk=erasure_pk, status=Erasure.Status.PENDING).update(
            status=Erasure.Status.DONE, completed_at=timezone.now(), rows_removed=removed
        )
        if claimed:
            audit_record(
                action="cleanroom.contributor.erased",
                actor=None,
                subject=f"contributor:{contributor_pk}",
                payload={"erasure": erasure_pk, "stage": "purged", "contributions": removed},
            )
    return bool(claimed)


# An erasure still pending this long after the request lost its job (a failure past the
# job's retries, a lost message): the reaper queues it again. Longer than the job's
# whole retry schedule, so the reaper does not race a job that is still retrying.
ERASURE_STUCK_AFTER = timedelta(minutes=15)


def erasures_resume(*, older_than: timedelta = ERASURE_STUCK_AFTER) -> int:
    """Queue the purge job again for erasures pending since before `older_than` ago.

    Safe to run any time: the purge is idempotent and claims completion with a
    conditional update, so a duplicate job finds the erasure done or nothing to purge.
    """
    from cleanroom.datasets.tasks import contributor_erase_task

    cutoff = timezone.now() - older_than
    stuck = list(
        Erasure.objects.filter(status=Erasure.Status.PENDING, requested_at__lte=cutoff)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    for erasure_pk in stuck:
        contributor_erase_task.delay(erasure_pk)
    return len(stuck)


# ---------------------------------------------------------------- retention


def contributions_expire(*, now: datetime | None = None) -> int:
    """Delete uploads older than their dataset's retention from every stored form.

    Idempotent (a second run finds nothing); rows leave the pool segments by their
    upload id, so a contributor's newer uploads stay.
    """
    now = now or timezone.now()
    removed = 0
    for dataset_pk, slug, retention_days in Dataset.objects.order_by("pk").values_list(
        "pk", "slug", "retention_days"
    ):
        cutoff = now - timedelta(days=retention_days)
        expired_qs = Contribution.objects.filter(dataset_id=dataset_pk, created_at__lt=cutoff)
        if not expired_qs.exists():
            continue
        with _pool_lock(dataset_pk):
            dataset = Dataset.objects.get(pk=dataset_pk)
            expired = list(expired_qs.values_list("pk", flat=True))
            if not expired:
                continue
            gone = pl.Series(expired, dtype=pl.Int64).implode()
            for segment in PoolSegment.objects.filter(dataset=dataset).order_by("pk"):
                frame = _segment_frame(dataset, segment)
                remaining = frame.filter(~pl.col(storage.PROVENANCE).is_in(gone))
                if remaining.height == frame.height:
                    continue
                storage.segment_delete(segment)
                if remaining.height:
                    _segments_write(dataset, remaining)
            Contribution.objects.filter(pk__in=expired).delete()
            storage.segments_sweep(dataset_pk=dataset_pk)
            audit_record(
                action="cleanroom.contribution.expired",
                actor=None,
                subject=f"dataset:{slug}",
                dataset=slug,
                payload={"contributions": len(expired), "retention_days": retention_days},
            )
            removed += len(expired)
    return removed


# ---------------------------------------------------------------- key rotation


def kek_rotate() -> dict[str, int]:
    """Re-wrap every data key and segment key under the current KEK (records untouched)."""
    counts = {"data_keys": 0, "segment_keys": 0}
    for pk in ContributorKey.objects.filter(wrapped__isnull=False).values_list("pk", flat=True):
        with transaction.atomic():
            record = ContributorKey.objects.select_for_update().get(pk=pk)
            counts["data_keys"] += storage.data_key_rewrap(record)
    for pk in PoolSegment.objects.values_list("pk", flat=True):
        with transaction.atomic():
            segment = PoolSegment.objects.select_for_update().filter(pk=pk).first()
            if segment is not None:
                counts["segment_keys"] += storage.segment_key_rewrap(segment)
    return counts
