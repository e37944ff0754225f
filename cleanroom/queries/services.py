"""Query services: preview, submit, approve, reject, execute.

Invariants (each has tests that try to break it):

1. A refused query changes nothing: the SQL is compiled, the measurement calibrated and
   dry-run on an empty frame of the schema, the pool size, balance and budget checked,
   all *before* the one transaction that records the query and reserves its budget.
2. The budget is never overspent: the reservation locks the dataset row
   (``select_for_update``), checks ``spent + cost <= total`` (and the organization's cap),
   and raises ``spent_epsilon`` in the same transaction; the database's check constraint
   ``spent <= total`` makes overspending impossible even for a bug in this code.
   The cost is the measurement's exact ``map(d_in)`` rounded *up* to 12 decimals.
3. Every run of a mechanism is charged (budget AND money); nothing else is. The price is
   held at submission in the reservation's transaction (``payouts.services.query_hold``,
   under the business account's row lock: an accepted query can always be paid for); it
   is consumed by the release's ``query_charge``, or, when the release fails after the
   mechanism ran, by ``_fail`` (contributors bore the privacy loss, so they are paid and
   the business is charged, consistently with the budget); it is given back with the
   budget on rejection or a failure before the mechanism ran. Anything unexpected before
   the mechanism fails the query with that refund (never left ``running``). The ledger
   row moves ``reserved -> charged`` (a conditional update, committed together with the
   pool's membership) before the mechanism touches the pool; a query rejected, or
   failing before that point (pool too small, dry run failed), is refunded.
4. A redelivered task never charges twice and never releases twice: work is claimed
   with ``UPDATE ... WHERE status='queued'``, the charge is one row per query and
   ``reserved -> charged`` succeeds once; the price moves once (``query_charge`` is keyed
   on the query) and ``released`` is written once, under the query's row lock.
   Each run of a query is an *attempt* (``Query.attempt``, taken under that row lock);
   the run records a heartbeat (``heartbeat_at``) every few seconds from a thread, and
   one silent for ``dead_after_seconds()`` lost its worker. Its query is then taken
   over by exactly one delivery (the redelivered task, or one ``queries_reap`` sends
   every few seconds): the next attempt. Every write of a run (its charge, its release,
   its failure) checks under the row lock that it still owns the query, so a run taken
   over (should it be alive after all) can change nothing and its numbers are dropped.
   A database outage stops a run without failing its query; it is taken over likewise.
   After ``MAX_RUN_ATTEMPTS`` the query fails (refunded when no attempt took the charge).

   **A release lost with its worker is run again under the same charge.** When the dead
   attempt had taken the charge (``charged``) but no release was stored, the next
   attempt draws the mechanism again and releases that: the budget row stays the one
   charge, the pool record and the hold are the same, and the money moves at the one
   release. Why this spends no more privacy than was charged: what an observer learns
   is what leaves the process, and a run's noisy numbers leave it only in the release
   transaction (the result, and the audit payload with its row count), which commits
   at most once per query; a run that died before that commit took its numbers with
   it (they are never logged, stored or returned before), so the one released output
   is the only draw anyone sees. The decision to draw again is made from the run's
   silence, before the new draw, never from a drawn value; the recovered run is the
   same mechanism (recompiled and recalibrated like the first; should the policy have
   changed it is not run, and the query fails still charged) over the members recorded
   with the charge who are still in the pool, never anyone else (they were not charged), and the pool record and the
   payment follow the members of the released run. The bound assumes a worker's death
   does not depend on the drawn noise; even if it did (a death after the draw that
   the draw itself caused), releasing one of at most ``MAX_RUN_ATTEMPTS`` draws costs
   at most that many times the charge by composition, and the attempts are capped.
5. Only noisy numbers leave: the result holds the engine's release (noisy values and
   intervals); errors after the mechanism say nothing about the data.
6. Every submission, approval, rejection, budget movement, start, release and failure is
   written to the audit log in the same transaction as the change (a refund is
   ``cleanroom.budget.refunded``).

7. The run is the mechanism that was priced: everything that fixes the privacy loss
   (``Mechanism.parameters()``: epsilon, delta, threshold, noise scales, bounds, rows
   per contributor, keys) is stored with the query at submission; the worker rebuilds
   the mechanism from the current policy and, if any of it differs, fails the query
   before any noise is drawn, refunds, and names what changed.
8. Personal caps: a contributor whose loss on the dataset over the past 365 days plus
   this query's epsilon would pass their cap is left out of the run's pool (and not
   paid). The choice reads only the public ledger and the caps, under the dataset's row
   lock in the charge transaction, so two concurrent runs cannot both spend the last room.

Budget is accounted for the relation the engine charges (one contributor's data
replaced, pool size public), in epsilon and in delta: releases with private group keys
(only where the policy says ``private_keys``) spend the policy's per-query ``delta``
from the dataset's ``total_delta``, reserved and refunded with the epsilon, and the
database refuses ``spent_delta > total_delta`` like it does for epsilon.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from decimal import ROUND_CEILING, Decimal, InvalidOperation
from typing import Any

import numpy as np
from django.conf import settings
from django.db import InterfaceError, OperationalError, transaction
from django.db.models import F, Q
from django.utils import timezone

from audit.services import audit_record
from cleanroom.accounts.models import User
from cleanroom.datasets.models import Consent, Dataset
from cleanroom.datasets.selectors import dataset_get, pool_size
from cleanroom.datasets.validation import DEFAULT_MAX_CONTRIBUTORS, DELTA_QUANTUM
from cleanroom.errors import (
    BudgetExhausted,
    Conflict,
    DomainError,
    Forbidden,
    InsufficientBalance,
    NotFound,
    QueryRefused,
    ValidationFailed,
)
from cleanroom.numbers import decimal_number
from cleanroom.queries import dp
from cleanroom.queries.membership import ranges_encode, ranges_members
from cleanroom.queries.models import BudgetCharge, ChargeState, Query, QueryPool, QueryStatus
from cleanroom.queries.policy import policy_bool, policy_decimal, policy_int, policy_names
from cleanroom.queries.selectors import dataset_visible_to, members_over_cap, organization_spent
from cleanroom.queries.sql import Plan, compile_sql

logger = logging.getLogger(__name__)

EPSILON_QUANTUM = Decimal("0.000000000001")
MAX_REASON_LENGTH = 2000


@dataclass(frozen=True)
class Policy:
    max_query_epsilon: Decimal
    min_contributors: int
    max_rows_per_contributor: int
    max_contributors: int
    auto_approve: bool
    max_epsilon_per_organization: Decimal | None
    allowed_organizations: tuple[str, ...] | None
    # Per-query delta of releases with private group keys (thresholded); 0 = not allowed.
    delta: float
    raw: dict[str, Any]


def policy_of(dataset: Dataset) -> Policy:
    """The dataset's policy JSON with defaults, as typed values (QueryRefused if malformed)."""
    raw = dict(dataset.policy or {})
    private_keys = policy_bool(raw, "private_keys", False)
    delta = policy_decimal(raw, "delta", "0.0000001")
    return Policy(
        max_query_epsilon=policy_decimal(raw, "max_query_epsilon", "1", positive=True)
        or Decimal(1),
        min_contributors=policy_int(raw, "min_contributors", 10),
        max_rows_per_contributor=policy_int(raw, "max_rows_per_contributor", 1, minimum=1),
        max_contributors=policy_int(raw, "max_contributors", DEFAULT_MAX_CONTRIBUTORS, minimum=1),
        auto_approve=policy_bool(raw, "auto_approve", False),
        max_epsilon_per_organization=policy_decimal(raw, "max_epsilon_per_organization", None),
        allowed_organizations=policy_names(raw, "allowed_organizations"),
        delta=float(delta or 0) if private_keys else 0.0,
        raw=raw,
    )


def privacy_unit_of(policy: Policy) -> dp.PrivacyUnit:
    return dp.PrivacyUnit(
        max_rows_per_contributor=policy.max_rows_per_contributor,
        max_rows=policy.max_rows_per_contributor * policy.max_contributors,
    )


def epsilon_parse(value: Any, *, policy: Policy) -> Decimal:
    """A requested epsilon: a finite positive number no larger than the per-query cap."""
    if value is None or value == "":
        return min(Decimal(1), policy.max_query_epsilon)
    if isinstance(value, bool):
        raise ValidationFailed("epsilon must be a number.")
    try:
        epsilon = decimal_number(value)  # ASCII digits only
    except (InvalidOperation, ValueError):
        raise ValidationFailed("epsilon must be a number.") from None
    if not epsilon.is_finite():
        raise ValidationFailed("epsilon must be a finite number (not NaN or infinity).")
    if epsilon <= 0:
        raise ValidationFailed("epsilon must be greater than zero.")
    if epsilon > policy.max_query_epsilon:
        raise QueryRefused(
            f"epsilon {epsilon} is above this dataset's per-query cap of "
            f"{policy.max_query_epsilon}."
        )
    if epsilon < Decimal("0.000001"):
        raise ValidationFailed("epsilon must be at least 0.000001.")
    return epsilon


def _dataset_for(*, slug: Any, user: Any) -> Dataset:
    if not isinstance(slug, str) or not slug or len(slug) > 100:
        raise NotFound("No such dataset.")
    dataset = dataset_get(slug=slug)
    if not dataset_visible_to(dataset=dataset, user=user):
        # Datasets restricted to other organizations do not exist for this one.
        raise NotFound(f"No dataset named {slug!r}.")
    return dataset


def _require_business(user: Any) -> None:
    if getattr(user, "role", None) != "business" or getattr(user, "organization_id", None) is None:
        raise Forbidden("Only business accounts may submit or preview queries.")


def query_compile(*, dataset: Dataset, sql: Any) -> Plan:
    """The SQL compiled against the dataset's schema and policy, or QueryRefused."""
    if not isinstance(sql, str):
        raise QueryRefused("sql must be a string.")
    return compile_sql(sql, table=dataset.slug, schema=dataset.schema, policy=dataset.policy)


def _mechanism(*, plan: Plan, policy: Policy, epsilon: Decimal) -> dp.Mechanism:
    try:
        return dp.mechanism_build(
            plan=plan,
            unit=privacy_unit_of(policy),
            epsilon=float(epsilon),
            delta=policy.delta if plan.has_private_keys else None,
        )
    except dp.EngineError as error:
        raise QueryRefused(str(error)) from None


def _cost(mechanism: dp.Mechanism) -> Decimal:
    """The exact loss of the measurement, rounded up so the ledger never undercounts."""
    return Decimal(repr(mechanism.epsilon)).quantize(EPSILON_QUANTUM, rounding=ROUND_CEILING)


def _delta_cost(mechanism: dp.Mechanism) -> Decimal:
    """The measurement's delta (0 under pure DP), rounded up like its epsilon."""
    return Decimal(repr(mechanism.delta or 0.0)).quantize(DELTA_QUANTUM, rounding=ROUND_CEILING)


def _parameters(mechanism: dp.Mechanism, target: Decimal) -> dict[str, Any]:
    """What is stored with a query: the target it was calibrated for, and its parameters."""
    return {"target_epsilon": str(target), **mechanism.parameters()}


def _same(left: Any, right: Any) -> bool:
    """Equal as JSON values (PostgreSQL's jsonb may give a float back as an integer)."""
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(_same(left[k], right[k]) for k in left)
    if isinstance(left, list | tuple) and isinstance(right, list | tuple):
        return len(left) == len(right) and all(
            _same(a, b) for a, b in zip(left, right, strict=True)
        )
    numbers = (int, float)
    if isinstance(left, numbers) and isinstance(right, numbers):
        if isinstance(left, bool) or isinstance(right, bool):
            return left is right
        return float(left) == float(right)
    return bool(left == right)


def _changed(stored: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """The parameters that differ between the priced mechanism and the one built now."""
    return sorted(
        key
        for key in stored.keys() | current.keys()
        if not _same(stored.get(key), current.get(key))
    )


def _price(dataset: Dataset, epsilon: Decimal) -> int:
    from payouts.services import query_price

    return int(query_price(price=dataset.price or {}, epsilon=epsilon))


def _currency(dataset: Dataset) -> str:
    return str((dataset.price or {}).get("currency", "")).upper()[:8]


def _pool_check(*, target: Dataset, policy: Policy) -> int:
    """Refuse a pool below the policy's minimum (a cheap upper bound: open consents on the
    current terms); the exact membership is checked on the snapshot in the worker."""
    members = Consent.objects.filter(
        dataset=target, withdrawn_at__isnull=True, terms_version=target.terms_version
    ).count()
    if members < policy.min_contributors:
        raise QueryRefused(
            f"The pool has {members} contributors; this dataset needs at least "
            f"{policy.min_contributors} before it answers queries."
        )
    return members


def _budget_check(
    *, dataset: Dataset, policy: Policy, cost: Decimal, delta: Decimal, requester: Any
) -> None:
    """Refuse a query the dataset's (or the organization's) remaining budget cannot pay.

    Submission calls it under the dataset's row lock; preview calls it on a plain read.
    """
    remaining = dataset.total_epsilon - dataset.spent_epsilon
    if cost > remaining:
        raise BudgetExhausted(
            f"The query needs epsilon {cost.normalize()} but the dataset has only "
            f"{remaining.normalize()} left."
        )
    remaining_delta = dataset.total_delta - dataset.spent_delta
    if delta > remaining_delta:
        raise BudgetExhausted(
            f"The query needs delta {delta.normalize():e} but the dataset has only "
            f"{remaining_delta.normalize():e} of its delta total left."
        )
    cap = policy.max_epsilon_per_organization
    if cap is not None:
        held = organization_spent(dataset=dataset, organization_id=requester.organization_id)
        if held + cost > cap:
            raise BudgetExhausted(
                f"Your organization may spend at most epsilon {cap.normalize()} on this "
                f"dataset and has used {held.normalize()}."
            )


# A cell whose expected 95% error is above this share of its size is called out.
NOISY_SHARE = 0.2


def _plain(value: float) -> str:
    """A figure for a sentence: no float noise, thousands separated."""
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:,.2f}".rstrip("0").rstrip(".")


def _relative_errors(
    accuracy: list[dict[str, Any]], *, plan: Plan, group_size: int | None
) -> list[str]:
    """Add each cell's expected relative error to ``accuracy``; return plain warnings.

    Public information only: a count is compared with the pool's even share per group
    (at least one row per contributor), a sum or mean with its column's public range.
    """
    bounds = {a.alias: (a.lower, a.upper) for a in plan.aggregates}
    warnings: list[str] = []
    for entry in accuracy:
        half_width = entry.get("half_width")
        entry["relative_error"] = None
        if half_width is None:
            continue
        if entry["aggregate"] == "count":
            size = float(group_size or 0)
            entry["relative_error"] = half_width / size if size else None
            entry["relative_to"] = f"a count of about {group_size or 0:,}"
        else:
            lower, upper = bounds.get(entry["column"], (None, None))
            if lower is None or upper is None or float(upper) == float(lower):
                continue
            size = abs(float(upper) - float(lower))
            if entry["aggregate"] == "sum":
                size *= max(group_size or 0, 1)
            entry["relative_error"] = half_width / size
            entry["relative_to"] = (
                f"the column's range {_plain(float(lower))} to {_plain(float(upper))}"
                if entry["aggregate"] == "avg"
                else f"the largest sum of about {group_size or 0:,} contributors' values"
            )
        relative = entry["relative_error"]
        if relative is None or relative > NOISY_SHARE:
            warnings.append(
                f"{entry['column']}: expect +-{_plain(half_width)} on {entry['relative_to']}"
                + (f" ({relative:.0%})" if relative is not None else "")
                + ": the pool is too small for this epsilon. Raise epsilon or wait for "
                "more contributors."
            )
    return warnings


def query_preview(*, dataset: Any, sql: Any, epsilon: Any, requester: Any) -> dict[str, Any]:
    """Epsilon, price and expected 95% accuracy per output column; spends and records nothing.

    Refuses (with the same errors) everything about the query that submission would
    refuse: the SQL, the epsilon, the mechanism's dry run, a pool below the policy's
    minimum, the remaining budget. A balance short of the price is not a refusal here
    (the preview is how a business learns what to top up): ``balance_refusal`` holds
    the words submission would answer with.
    """
    _require_business(requester)
    target = _dataset_for(slug=dataset, user=requester)
    policy = policy_of(target)
    requested = epsilon_parse(epsilon, policy=policy)
    plan = query_compile(dataset=target, sql=sql)
    mechanism = _mechanism(plan=plan, policy=policy, epsilon=requested)
    try:
        dp.mechanism_dry_run(mechanism)
    except dp.EngineError as error:
        raise QueryRefused(str(error)) from None
    cost = _cost(mechanism)
    delta = _delta_cost(mechanism)
    _pool_check(target=target, policy=policy)
    price = _price(target, cost)
    _budget_check(dataset=target, policy=policy, cost=cost, delta=delta, requester=requester)
    from payouts.services import balance_ensure

    # The price is what a business needs to know before topping up: a short balance is
    # stated (submission refuses it with these words), not a refusal of the preview.
    balance_refusal = None
    try:
        balance_ensure(
            organization=requester.organization, amount=price, currency=_currency(target)
        )
    except InsufficientBalance as error:
        balance_refusal = error.detail
    remaining = target.total_epsilon - target.spent_epsilon
    remaining_delta = target.total_delta - target.spent_delta
    members = pool_size(dataset=target)
    # A mean's accuracy depends on its group's size: stated for an even split of the pool.
    group_size = max(1, members // max(1, plan.group_count or 1)) if members else None
    accuracy = mechanism.accuracy(group_size=group_size)
    warnings = _relative_errors(accuracy, plan=plan, group_size=group_size)
    return {
        "dataset": target.slug,
        "epsilon": float(cost),
        "delta": float(delta),
        "privacy_unit": dp.PRIVACY_UNIT,
        "price": price,
        "currency": _currency(target),
        "columns": [name for name, _ in plan.columns],
        "accuracy": accuracy,
        "warnings": warnings,
        "groups": plan.group_count,
        "pool_size": members,
        "remaining_epsilon": float(remaining),
        "remaining_delta": float(remaining_delta),
        "fits_budget": True,  # a query that does not fit is refused above
        "balance_refusal": balance_refusal,
        "auto_approve": policy.auto_approve,
        "threshold": mechanism.threshold,
    }


def _enqueue(query_id: int) -> None:
    from cleanroom.queries.tasks import query_execute_task

    transaction.on_commit(lambda: query_execute_task.delay(query_id))


def query_submit(*, dataset: Any, sql: Any, epsilon: Any, requester: Any) -> Query:
    """Check everything, then record the query and reserve its budget in one transaction."""
    _require_business(requester)
    target = _dataset_for(slug=dataset, user=requester)
    policy = policy_of(target)
    requested = epsilon_parse(epsilon, policy=policy)
    plan = query_compile(dataset=target, sql=sql)
    mechanism = _mechanism(plan=plan, policy=policy, epsilon=requested)
    try:
        dp.mechanism_dry_run(mechanism)
    except dp.EngineError as error:
        raise QueryRefused(str(error)) from None
    cost = _cost(mechanism)
    delta = _delta_cost(mechanism)
    _pool_check(target=target, policy=policy)
    price = _price(target, cost)
    from payouts.services import balance_ensure, query_hold

    # An early, lock-free refusal; the hold below is what guarantees the money.
    balance_ensure(organization=requester.organization, amount=price, currency=_currency(target))
    with transaction.atomic():
        locked = Dataset.objects.select_for_update().get(pk=target.pk)
        _budget_check(dataset=locked, policy=policy, cost=cost, delta=delta, requester=requester)
        status = QueryStatus.QUEUED if policy.auto_approve else QueryStatus.PENDING_APPROVAL
        query = Query.objects.create(
            dataset=locked,
            organization_id=requester.organization_id,
            requester=requester,
            sql=sql,
            epsilon=cost,
            status=status,
            price=price,
            delta=float(delta) if plan.has_private_keys else None,
            mechanism=_parameters(mechanism, requested),
            currency=_currency(locked),
            review_reason="Approved by the dataset policy (auto-approve)."
            if policy.auto_approve
            else "",
        )
        # The price is held in this transaction, under the business account's row lock:
        # an accepted query can always be paid for (InsufficientBalance rolls all back).
        query_hold(query=query)
        BudgetCharge.objects.create(
            query=query,
            dataset=locked,
            organization_id=requester.organization_id,
            epsilon=cost,
            delta=delta,
            state=ChargeState.RESERVED,
        )
        Dataset.objects.filter(pk=locked.pk).update(
            spent_epsilon=F("spent_epsilon") + cost, spent_delta=F("spent_delta") + delta
        )
        locked.refresh_from_db(
            fields=["spent_epsilon", "total_epsilon", "spent_delta", "total_delta"]
        )
        subject = f"query:{query.pk}"
        audit_record(
            action="cleanroom.query.submitted",
            actor=requester,
            subject=subject,
            dataset=locked.slug,
            payload={
                "epsilon": str(cost),
                "delta": str(delta.normalize()),
                "price": price,
                "organization": requester.organization_id,
                "groups": plan.group_count,
            },
        )
        audit_record(
            action="cleanroom.budget.charged",
            actor=requester,
            subject=subject,
            dataset=locked.slug,
            payload={
                "epsilon": str(cost),
                "spent_epsilon": str(locked.spent_epsilon),
                "total_epsilon": str(locked.total_epsilon),
                "delta": str(delta.normalize()),
                "spent_delta": str(locked.spent_delta.normalize()),
                "total_delta": str(locked.total_delta.normalize()),
                "state": ChargeState.RESERVED,
            },
        )
        if policy.auto_approve:
            audit_record(
                action="cleanroom.query.approved",
                actor=None,
                subject=subject,
                dataset=locked.slug,
                payload={"reason": query.review_reason, "by": "policy"},
            )
            audit_record(
                action="cleanroom.query.queued", actor=None, subject=subject, dataset=locked.slug
            )
            _enqueue(query.pk)
    return query


def _reason(value: Any, *, required: bool) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise ValidationFailed("reason must be text.")
    reason = value.strip()
    if required and not reason:
        raise ValidationFailed("A reason is required to reject a query.")
    if len(reason) > MAX_REASON_LENGTH:
        raise ValidationFailed(f"reason is limited to {MAX_REASON_LENGTH} characters.")
    return reason


def _require_compliance(user: Any) -> None:
    if getattr(user, "role", None) != "compliance":
        raise Forbidden("Only compliance officers may approve or reject queries.")


def _locked_query(query_id: Any) -> Query:
    try:
        number = int(str(query_id))
    except (TypeError, ValueError):
        raise NotFound("No such query.") from None
    query = Query.objects.select_for_update().select_related("dataset").filter(pk=number).first()
    if query is None:
        raise NotFound("No such query.")
    return query


def _locked_pending_review(query_id: Any) -> Query:
    """The query, locked, if it still waits for a compliance decision (one decision only)."""
    query = _locked_query(query_id)
    if query.status != QueryStatus.PENDING_APPROVAL:
        raise Conflict(f"Query {query.pk} is {query.status}, not pending approval.")
    return query


def query_approve(*, query_id: Any, reviewer: Any, reason: Any = "") -> Query:
    """Compliance approves a pending query: it is queued for the worker."""
    _require_compliance(reviewer)
    text = _reason(reason, required=False)
    with transaction.atomic():
        query = _locked_pending_review(query_id)
        query.status = QueryStatus.QUEUED
        query.review_reason = text
        query.reviewed_by = reviewer
        query.save(update_fields=["status", "review_reason", "reviewed_by", "updated_at"])
        subject = f"query:{query.pk}"
        audit_record(
            action="cleanroom.query.approved",
            actor=reviewer,
            subject=subject,
            dataset=query.dataset.slug,
            payload={"reason": text, "by": "compliance"},
        )
        audit_record(
            action="cleanroom.query.queued",
            actor=reviewer,
            subject=subject,
            dataset=query.dataset.slug,
        )
        _enqueue(query.pk)
    return query


def _refund(query: Query, *, actor: Any) -> None:
    """Give back a reservation that never reached the mechanism (caller holds a transaction)."""
    dataset = Dataset.objects.select_for_update().get(pk=query.dataset_id)
    refunded = BudgetCharge.objects.filter(query=query, state=ChargeState.RESERVED).update(
        state=ChargeState.REFUNDED, updated_at=timezone.now()
    )
    if not refunded:
        return
    from payouts.services import query_hold_release

    query_hold_release(query=query)  # the held price goes back with the budget
    charge = BudgetCharge.objects.get(query=query)
    Dataset.objects.filter(pk=dataset.pk).update(
        spent_epsilon=F("spent_epsilon") - charge.epsilon,
        spent_delta=F("spent_delta") - charge.delta,
    )
    dataset.refresh_from_db(fields=["spent_epsilon", "total_epsilon", "spent_delta"])
    audit_record(
        action="cleanroom.budget.refunded",
        actor=actor,
        subject=f"query:{query.pk}",
        dataset=dataset.slug,
        payload={
            "epsilon": str(charge.epsilon),
            "spent_epsilon": str(dataset.spent_epsilon),
            "total_epsilon": str(dataset.total_epsilon),
            "delta": str(charge.delta.normalize()),
            "spent_delta": str(dataset.spent_delta.normalize()),
        },
    )


def query_reject(*, query_id: Any, reviewer: Any, reason: Any) -> Query:
    """Compliance rejects a pending query with a reason; its reserved budget is given back."""
    _require_compliance(reviewer)
    text = _reason(reason, required=True)
    with transaction.atomic():
        query = _locked_pending_review(query_id)
        query.status = QueryStatus.REJECTED
        query.review_reason = text
        query.reviewed_by = reviewer
        query.error = f"Rejected: {text}"
        query.save(update_fields=["status", "review_reason", "reviewed_by", "error", "updated_at"])
        audit_record(
            action="cleanroom.query.rejected",
            actor=reviewer,
            subject=f"query:{query.pk}",
            dataset=query.dataset.slug,
            payload={"reason": text},
        )
        _refund(query, actor=reviewer)
    return query


# -- execution (in the worker) ------------------------------------------------------------


def _progress(query_id: int, value: int) -> None:
    Query.objects.filter(pk=query_id, status=QueryStatus.RUNNING).update(
        progress=value, updated_at=timezone.now()
    )


def _fail(query_id: int, message: str, *, refund: bool, attempt: int | None = None) -> None:
    """Fail a running query (refunded if the mechanism was never taken); a run that was
    taken over by a later attempt (``attempt`` no longer the query's) changes nothing."""
    with transaction.atomic():
        query = Query.objects.select_for_update().select_related("dataset").get(pk=query_id)
        if query.status != QueryStatus.RUNNING:
            return
        if attempt is not None and query.attempt != attempt:
            return
        if refund and query.mechanism_ran:
            # A delivery took the mechanism meanwhile (set under this row's lock): no refund.
            refund = False
            message = "The run failed after the mechanism started; the budget stays charged."
        query.status = QueryStatus.FAILED
        query.error = message
        query.progress = 100
        query.save(update_fields=["status", "error", "progress", "updated_at"])
        audit_record(
            action="cleanroom.query.failed",
            actor=None,
            subject=f"query:{query.pk}",
            dataset=query.dataset.slug,
            payload={"error": message, "charged": not refund},
        )
        if refund:
            _refund(query, actor=None)
        elif query.mechanism_ran:
            _charge_ran(query)


def _charge_ran(query: Query) -> None:
    """A run whose mechanism ran but whose release failed is charged like its budget:
    the business pays the held price and the pool members are paid (they bore the
    privacy loss). A charge that still fails is logged and left to reconciliation;
    it never undoes the failure being recorded."""
    from payouts.services import query_charge

    pool = QueryPool.objects.filter(query_id=query.pk).first()
    if pool is None:
        logger.error("query %s: mechanism ran without a recorded pool; not charged", query.pk)
        return
    try:
        with transaction.atomic():
            query_charge(query=query, members=ranges_members(bytes(pool.ranges)))
    except Exception:
        logger.exception("query %s: charging a failed run did not succeed", query.pk)


# -- runs, heartbeats and recovery ---------------------------------------------------------

# A query is run at most this many times (the first run and the recoveries of runs whose
# worker died); then it fails (refunded if no run took the mechanism, charged otherwise).
MAX_RUN_ATTEMPTS = 3


def heartbeat_seconds() -> float:
    """How often a run records that it is alive."""
    return float(getattr(settings, "CLEANROOM_QUERY_HEARTBEAT_SECONDS", 5))


def dead_after_seconds() -> float:
    """A run silent for this long is dead: its query may be taken over."""
    return float(getattr(settings, "CLEANROOM_QUERY_DEAD_AFTER_SECONDS", 20))


@dataclass(frozen=True)
class LookAgain:
    """Deliver the query again after ``after`` seconds, expecting run ``attempt`` to own it."""

    after: float
    attempt: int


@contextmanager
def _heartbeat(query_id: int, attempt: int) -> Iterator[None]:
    """While the block runs, a thread records every few seconds that this run is alive
    (on its own database connection, so a long mechanism or a stalled transaction of the
    run does not silence it). It stops when the block ends or the run lost the query."""
    stop = threading.Event()

    def beat() -> None:
        from django.db import connection

        try:
            while not stop.wait(heartbeat_seconds()):
                try:
                    alive = Query.objects.filter(
                        pk=query_id, status=QueryStatus.RUNNING, attempt=attempt
                    ).update(heartbeat_at=timezone.now())
                except (OperationalError, InterfaceError):
                    connection.close()  # the database restarts: try again next beat
                    continue
                if not alive:
                    return
        finally:
            connection.close()

    thread = threading.Thread(target=beat, name=f"query-{query_id}-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


def _last_sign_of_life(query: Query) -> Any:
    return query.heartbeat_at or query.started_at or query.updated_at


def _take_over(query_id: int, seen: int) -> int | LookAgain | None:
    """Take a running query whose run ``seen`` went silent: the next attempt owns it.

    Under the query's row lock, so of all deliveries that find it dead exactly one takes
    it; the run taken over can no longer release, fail or charge it (each checks the
    attempt under the same lock), should it turn out to be alive after all.
    """
    with transaction.atomic():
        query = Query.objects.select_for_update().select_related("dataset").get(pk=query_id)
        if query.status != QueryStatus.RUNNING or query.attempt != seen:
            return None
        now = timezone.now()
        wait = (
            _last_sign_of_life(query) + timedelta(seconds=dead_after_seconds()) - now
        ).total_seconds()
        if wait > 0:
            return LookAgain(wait, seen)
        state = BudgetCharge.objects.filter(query_id=query_id).values_list("state", flat=True)
        charged = state.first() == ChargeState.CHARGED
        if query.attempt >= MAX_RUN_ATTEMPTS:
            _fail(
                query_id,
                f"The worker running this query was lost {query.attempt} times; "
                + (
                    "the budget and the price stay charged."
                    if charged
                    else "nothing was run and the budget was given back."
                ),
                refund=not charged,
            )
            return None
        query.attempt += 1
        query.heartbeat_at = now
        query.save(update_fields=["attempt", "heartbeat_at", "updated_at"])
        audit_record(
            action="cleanroom.query.running",
            actor=None,
            subject=f"query:{query_id}",
            dataset=query.dataset.slug,
            payload={
                "attempt": query.attempt,
                "recovered": True,
                "mechanism_taken": charged,
            },
        )
        return query.attempt


def _claim(query_id: int, expect: int | None) -> int | LookAgain | None:
    """Take the query for this delivery: the attempt to run; None when there is nothing
    to do; LookAgain while another run of it shows signs of life.

    ``expect`` is the run a delivery was sent to check on (by ``queries_reap`` or an
    earlier LookAgain): if another delivery has taken the query over since, this one has
    nothing to do.
    """
    now = timezone.now()
    with transaction.atomic():
        claimed = Query.objects.filter(pk=query_id, status=QueryStatus.QUEUED).update(
            status=QueryStatus.RUNNING,
            progress=10,
            attempt=F("attempt") + 1,
            started_at=now,
            heartbeat_at=now,
            updated_at=now,
        )
        if claimed:
            slug, attempt = Query.objects.filter(pk=query_id).values_list(
                "dataset__slug", "attempt"
            )[0]
            audit_record(
                action="cleanroom.query.running",
                actor=None,
                subject=f"query:{query_id}",
                dataset=slug,
            )
            return int(attempt)
    query = Query.objects.filter(pk=query_id).first()
    if query is None or query.status != QueryStatus.RUNNING:
        return None
    if expect is not None and query.attempt != expect:
        return None
    return _take_over(query_id, query.attempt)


def query_execute(*, query_id: int, attempt: int | None = None) -> LookAgain | None:
    """Run a queued query once over the pool (idempotent: safe to deliver many times).

    Returns None, or when to deliver it again (another run of it may still be alive; see
    ``_claim``). ``attempt`` is the run a redelivery expects to find (None: any).
    """
    claim = _claim(query_id, attempt)
    if claim is None or isinstance(claim, LookAgain):
        return claim
    with _heartbeat(query_id, claim):
        _run(query_id, claim)
    return None


# The database went away (a restart, a network cut): the run stops where it is, its
# query stays ``running``, and the next delivery or the reaper takes it over once it is
# silent. Never a reason to fail the query.
_TRANSIENT = (OperationalError, InterfaceError)


def _run(query_id: int, attempt: int) -> None:
    from payouts.crash import crash_point

    crash_point("queries.execute.after_claim")
    try:
        prepared = _prepare(query_id, attempt)
    except _TRANSIENT:
        raise
    except Exception:
        # Anything unexpected before the mechanism (a bug, a malformed policy, the pool
        # unreadable) fails the query with a refund instead of leaving it running with its
        # budget reserved. The message says nothing about the data; the log has the trace.
        logger.exception("query %s: failed before the mechanism ran", query_id)
        _fail(
            query_id,
            "The query could not be prepared; nothing was run and the budget was given back.",
            refund=True,
            attempt=attempt,
        )
        return
    if prepared is None:
        return
    dataset, mechanism, snapshot = prepared
    with transaction.atomic():
        query = Query.objects.select_for_update().get(pk=query_id)
        if query.status != QueryStatus.RUNNING or query.attempt != attempt:
            return  # taken over by a later attempt: that one runs it
        over_cap = np.empty(0, dtype=np.int64)
        if BudgetCharge.objects.filter(query_id=query_id, state=ChargeState.RESERVED).exists():
            # The dataset's row lock orders the charges of concurrent runs, so the past-year
            # losses read for the caps include every run charged before this one.
            locked = Dataset.objects.select_for_update().get(pk=dataset.pk)
            over_cap = members_over_cap(
                dataset=locked, members=snapshot.members, epsilon=_cost(mechanism)
            )
            if over_cap.size:
                from cleanroom.datasets.pool import pool_without

                snapshot = pool_without(snapshot, over_cap)
                minimum = policy_of(locked).min_contributors
                if snapshot.size < minimum:
                    _fail(
                        query_id,
                        f"{over_cap.size} contributors reached their personal privacy cap, "
                        f"which leaves fewer than {minimum}; nothing was run and the budget "
                        "was given back.",
                        refund=True,
                        attempt=attempt,
                    )
                    return
        charged = BudgetCharge.objects.filter(query_id=query_id, state=ChargeState.RESERVED).update(
            state=ChargeState.CHARGED, updated_at=timezone.now()
        )
        if charged:
            Query.objects.filter(pk=query_id).update(
                mechanism_ran=True, progress=60, updated_at=timezone.now()
            )
            members = snapshot.members
            QueryPool.objects.create(
                query_id=query_id,
                dataset=dataset,
                size=int(snapshot.size),
                ranges=ranges_encode(members),
                min_member=int(members.min()) if members.size else None,
                max_member=int(members.max()) if members.size else None,
                excluded_at_cap=int(over_cap.size),
            )
            excluded_at_cap = int(over_cap.size)
        else:
            recovered = _recovered_pool(query_id, attempt, dataset, snapshot)
            if recovered is None:
                return
            snapshot, excluded_at_cap = recovered
    crash_point("queries.execute.after_charge")
    try:
        release = dp.mechanism_release(mechanism=mechanism, frame=snapshot.frame)
    except Exception:
        logger.exception("query %s: mechanism failed after charging", query_id)
        _fail(
            query_id,
            "The mechanism failed while running; the budget and the price stay charged.",
            refund=False,
            attempt=attempt,
        )
        return
    _progress(query_id, 90)
    result = {
        "columns": release.columns,
        "rows": release.rows,
        "accuracy": release.intervals,
        "column_accuracy": mechanism.accuracy(
            group_size=max(1, snapshot.size // max(1, mechanism.plan.group_count or 1))
        ),
        "confidence": 1 - dp.ALPHA,
        "epsilon": float(_cost(mechanism)),
        "delta": float(_delta_cost(mechanism)),
        "privacy_unit": dp.PRIVACY_UNIT,
        "excluded_at_cap": excluded_at_cap,
        "threshold": mechanism.threshold,
        "pool_size": int(snapshot.size),
    }
    try:
        released = _release(query_id, attempt, result, snapshot.members)
    except _TRANSIENT:
        raise  # nothing was stored: a later attempt runs it again under the same charge
    except Exception:
        # Cannot be for lack of money (the price was held at submission). The run is
        # charged like its budget: _fail pays the contributors from the hold.
        logger.exception("query %s: recording the release failed", query_id)
        _fail(
            query_id,
            "The release could not be recorded after the mechanism ran; the budget and the "
            "price stay charged.",
            refund=False,
            attempt=attempt,
        )
        return
    if not released:
        logger.warning("query %s: run %s was taken over; its result is dropped", query_id, attempt)
        return
    crash_point("queries.execute.after_release")


def _recovered_pool(
    query_id: int, attempt: int, dataset: Dataset, snapshot: Any
) -> tuple[Any, int] | None:
    """The pool for a run that recovers a release lost with its worker (the charge was
    taken by an earlier attempt): the members recorded with that charge who are still in
    the pool, never anyone else (they were not charged), and how many that charge left out
    at their cap. None after failing the query."""
    from cleanroom.datasets.pool import pool_without

    state = BudgetCharge.objects.filter(query_id=query_id).values_list("state", flat=True).first()
    pool = QueryPool.objects.filter(query_id=query_id).first()
    if state != ChargeState.CHARGED or pool is None:
        logger.error("query %s: no charge to recover under (state %s)", query_id, state)
        return None
    recorded = ranges_members(bytes(pool.ranges))
    newcomers = np.setdiff1d(snapshot.members, recorded, assume_unique=True)
    if newcomers.size:
        snapshot = pool_without(snapshot, newcomers)
    minimum = policy_of(dataset).min_contributors
    if snapshot.size < minimum:
        _fail(
            query_id,
            f"The run was lost with its worker and fewer than {minimum} of the contributors "
            "it was charged for are still in the pool; the budget and the price stay charged.",
            refund=False,
            attempt=attempt,
        )
        return None
    Query.objects.filter(pk=query_id).update(progress=60, updated_at=timezone.now())
    return snapshot, pool.excluded_at_cap


def _prepare(query_id: int, attempt: int) -> tuple[Dataset, dp.Mechanism, Any] | None:
    """Everything before the mechanism: recompile, recalibrate, dry-run, snapshot the pool.

    Returns None after failing the query (with a refund) for an expected refusal.
    """
    from cleanroom.datasets.pool import pool_snapshot

    query = Query.objects.select_related("dataset", "organization", "requester").get(pk=query_id)
    dataset = query.dataset
    stored = query.mechanism or {}
    target = Decimal(str(stored.get("target_epsilon", query.epsilon)))
    try:
        policy = policy_of(dataset)
        plan = query_compile(dataset=dataset, sql=query.sql)
        mechanism = _mechanism(plan=plan, policy=policy, epsilon=target)
        if _cost(mechanism) > query.epsilon:
            raise QueryRefused("The dataset's policy changed: the query now costs more.")
        changed = _changed(stored, _parameters(mechanism, target)) if stored else []
        if changed:
            raise QueryRefused(
                "The dataset's policy changed since the query was priced: its "
                f"{', '.join(changed)} would differ, so it is not the mechanism that was "
                "charged. Submit it again to price it under the new policy."
            )
        dp.mechanism_dry_run(mechanism)
    except (DomainError, dp.EngineError) as error:
        _fail(
            query_id, f"Refused before any noise was drawn: {error}", refund=True, attempt=attempt
        )
        return None
    _progress(query_id, 25)
    snapshot = pool_snapshot(dataset=dataset)
    _progress(query_id, 45)
    if snapshot.size < policy.min_contributors:
        _fail(
            query_id,
            f"The pool has fewer than {policy.min_contributors} contributors; nothing was run.",
            refund=True,
            attempt=attempt,
        )
        return None
    if snapshot.size > policy.max_contributors:
        _fail(
            query_id,
            "The pool is larger than the policy's max_contributors bound; nothing was run.",
            refund=True,
            attempt=attempt,
        )
        return None
    return dataset, mechanism, snapshot


def _release(query_id: int, attempt: int, result: dict[str, Any], members: Any) -> bool:
    """Store the result and charge the query in one transaction, if this run still owns
    it; False (nothing stored) when it was released already or taken over."""
    from payouts.services import query_charge

    with transaction.atomic():
        query = (
            Query.objects.select_for_update()
            .select_related("dataset", "organization", "requester")
            .get(pk=query_id)
        )
        if query.status != QueryStatus.RUNNING or query.attempt != attempt:
            return False
        pool = QueryPool.objects.filter(query_id=query_id).first()
        if pool is not None and pool.size != len(members):
            # A recovered run over fewer members (some left since the charge): the record
            # of who was in the released run's pool, and who is paid, is that run's.
            pool.size = len(members)
            pool.ranges = ranges_encode(members)
            pool.min_member = int(members.min()) if len(members) else None
            pool.max_member = int(members.max()) if len(members) else None
            pool.save(update_fields=["size", "ranges", "min_member", "max_member"])
        query.status = QueryStatus.RELEASED
        query.result = result
        query.progress = 100
        query.released_at = timezone.now()
        query.save(update_fields=["status", "result", "progress", "released_at", "updated_at"])
        query_charge(query=query, members=members)
        audit_record(
            action="cleanroom.query.released",
            actor=None,
            subject=f"query:{query.pk}",
            dataset=query.dataset.slug,
            payload={
                "epsilon": str(query.epsilon),
                "delta": str(query.delta or 0),
                "rows": len(result["rows"]),
                "pool_size": result["pool_size"],
            },
        )
    return True


def requester_of(query: Query) -> User:
    return query.requester


def _enqueue_check(query_id: int, attempt: int) -> None:
    from cleanroom.queries.tasks import query_execute_task

    transaction.on_commit(lambda: query_execute_task.delay(query_id, attempt=attempt))


def queries_reap(*, now: Any = None) -> dict[str, int]:
    """Periodic repair of runs whose worker or task was lost (idempotent; beat runs it
    every few seconds, so a dead worker is noticed within a minute).

    - ``running`` and silent for longer than ``dead_after_seconds()``: its worker died (a
      live run records a heartbeat every few seconds). A delivery is sent to take it over
      (see ``_take_over``): the next attempt runs it, under the same charge if the dead
      run had taken the mechanism; past ``MAX_RUN_ATTEMPTS`` it fails (refunded when
      nothing ran). Sending it twice is harmless: only one delivery takes each attempt.
    - ``queued`` untouched for longer than the hard time limit: its task was lost (a
      broker flush, a crash before publishing); queued again. Delivering it twice is
      harmless: the worker claims it with a conditional update.
    """
    now = now or timezone.now()
    limit = timedelta(seconds=int(getattr(settings, "CELERY_TASK_TIME_LIMIT", 600)))
    silent_since = now - timedelta(seconds=dead_after_seconds())
    recovered = requeued = 0
    silent = Query.objects.filter(status=QueryStatus.RUNNING).filter(
        Q(heartbeat_at__lt=silent_since)
        | Q(heartbeat_at__isnull=True, started_at__lt=silent_since)
        | Q(heartbeat_at__isnull=True, started_at__isnull=True, updated_at__lt=silent_since)
    )
    for query_id, attempt in silent.values_list("pk", "attempt"):
        _enqueue_check(query_id, attempt)
        recovered += 1
    lost = Query.objects.filter(status=QueryStatus.QUEUED, updated_at__lt=now - limit)
    for query_id in lost.values_list("pk", flat=True):
        with transaction.atomic():
            touched = Query.objects.filter(
                pk=query_id, status=QueryStatus.QUEUED, updated_at__lt=now - limit
            ).update(updated_at=timezone.now())
            if not touched:
                continue
            slug = Query.objects.filter(pk=query_id).values_list("dataset__slug", flat=True)[0]
            audit_record(
                action="cleanroom.query.queued",
                actor=None,
                subject=f"query:{query_id}",
                dataset=slug,
                payload={"requeued": True},
            )
            _enqueue(query_id)
            requeued += 1
    return {"recovered": recovered, "requeued": requeued}
