"""Portal pages of datasets: catalog and dataset cards for everyone signed in; consent,
uploads and the "my data" dashboard (privacy loss, earnings, queries, export, erasure)
for contributors; the publish form for compliance officers.

Pages call the same services and selectors as the API; a DomainError is shown with its
plain message and status, and nothing changed.
"""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from cleanroom import parsers as json_input
from cleanroom.accounts.models import Contributor
from cleanroom.datasets import selectors, services
from cleanroom.datasets.api import PlaintextStaysInMemory, export_response
from cleanroom.errors import DomainError, PayloadTooLarge, ValidationFailed
from cleanroom.numbers import decimal_number
from cleanroom.refusals import UPLOAD_REFUSED, refusal_of_error
from portal.access import roles

EXAMPLE_SCHEMA = {
    "columns": [
        {"name": "age", "type": "integer", "lower": 18, "upper": 100},
        {"name": "region", "type": "string", "categories": ["north", "south", "east", "west"]},
        {"name": "income", "type": "float", "lower": 0, "upper": 500000},
        {"name": "owns_home", "type": "boolean"},
    ]
}


def _contributor(request: HttpRequest) -> Contributor:
    return request.user.contributor  # type: ignore[union-attr]


def _card(dataset: Any, request: HttpRequest) -> dict[str, Any]:
    budget = selectors.budget_of(dataset)
    total = Decimal(budget["total_epsilon"])
    spent_percent = float(Decimal(budget["spent_epsilon"]) / total * 100) if total else 0.0
    card = {
        "dataset": dataset,
        "contributors": selectors.pool_size(dataset=dataset),
        "budget": budget,
        "spent_percent": round(min(spent_percent, 100.0), 1),
        "consent": None,
    }
    if getattr(request.user, "role", None) == "contributor":
        card["consent"] = selectors.consent_status(
            contributor=_contributor(request), dataset=dataset
        )
        # "Your rows are in the pool" only once they are: consented and holding rows.
        card["holds_rows"] = any(
            u["dataset"] == dataset.slug
            for u in selectors.contribution_summary(contributor=_contributor(request))
        )
        consent = selectors.consent_open(contributor=_contributor(request), dataset=dataset)
        if consent is not None:
            card["privacy_cap"] = selectors.privacy_cap_of(consent=consent, dataset=dataset)
    return card


ALL_ROLES = ("business", "compliance", "contributor")


@roles(*ALL_ROLES)
@require_GET
def catalog(request: HttpRequest) -> HttpResponse:
    cards = [
        _card(dataset, request) for dataset in selectors.dataset_list_visible(user=request.user)
    ]
    return render(request, "datasets/catalog.html", {"cards": cards})


@roles(*ALL_ROLES)
@require_GET
def detail(request: HttpRequest, slug: str) -> HttpResponse:
    dataset = selectors.dataset_get_visible(slug=slug, user=request.user)
    context: dict[str, Any] = {"card": _card(dataset, request), "errors": []}
    if getattr(request.user, "role", None) == "contributor":
        contributor = _contributor(request)
        context["uploads"] = [
            u
            for u in selectors.contribution_summary(contributor=contributor)
            if u["dataset"] == slug
        ]
        context["example_records"] = json.dumps([_example_row(dataset.schema)], indent=1)
        context["csv_header"] = ",".join(c["name"] for c in dataset.schema["columns"])
    return render(request, "datasets/detail.html", context)


def _example_row(schema: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for column in schema["columns"]:
        if column["type"] in ("integer", "float"):
            row[column["name"]] = column["lower"]
        elif column["type"] == "boolean":
            row[column["name"]] = True
        else:
            row[column["name"]] = (column.get("categories") or ["text"])[0]
    return row


@roles("contributor")
@require_POST
def consent(request: HttpRequest, slug: str) -> HttpResponse:
    dataset = selectors.dataset_get(slug=slug)
    cap = request.POST.get("privacy_cap", "").strip()
    try:
        _, created = services.consent_give(
            contributor=_contributor(request),
            dataset=dataset,
            privacy_cap={"epsilon": cap} if cap else None,
        )
    except ValidationFailed as error:
        messages.error(request, str(error))
        return redirect("datasets:detail", slug=slug)
    messages.success(
        request,
        f"You consented to version {dataset.terms_version} of the terms of {dataset.name}."
        if created
        else "Your consent was already on the current terms.",
    )
    return redirect("datasets:detail", slug=slug)


@roles("contributor")
@require_POST
def withdraw(request: HttpRequest, slug: str) -> HttpResponse:
    dataset = selectors.dataset_get(slug=slug)
    services.consent_withdraw(contributor=_contributor(request), dataset=dataset)
    messages.success(
        request,
        f"Consent withdrawn: from now on no query of {dataset.name} sees your rows. Your "
        "rows stay stored (encrypted) until you erase your data; what you earned stays yours.",
    )
    return redirect("datasets:detail", slug=slug)


@roles("contributor")
@csrf_exempt
def upload(request: HttpRequest, slug: str) -> HttpResponseBase:
    # The role and the size are checked before anything reads the body (an anonymous
    # 200 MB POST is never parsed). The upload handler must be set before the body is
    # read, and CSRF checking reads it: so CSRF is checked below, after the handler is in
    # place (Django's documented way).
    limit = settings.CLEANROOM_MAX_UPLOAD_BYTES
    if int(request.META.get("CONTENT_LENGTH") or 0) > limit:
        raise PayloadTooLarge(
            f"The upload is larger than the limit of {limit // (1024 * 1024)} MB; "
            "split it into several uploads."
        )
    request.upload_handlers = [PlaintextStaysInMemory(request)]
    return _upload_protected(request, slug)


@csrf_protect
@require_POST
def _upload_protected(request: HttpRequest, slug: str) -> HttpResponse:
    dataset = selectors.dataset_get(slug=slug)
    file = request.FILES.get("file")
    text = request.POST.get("records", "").strip()
    try:
        if file is not None and file.size:
            contribution = services.contribution_upload(
                contributor=_contributor(request), dataset=dataset, csv_file=file.file
            )
        elif text:
            try:
                records = json_input.loads(text)
            except json.JSONDecodeError as exc:
                raise ValidationFailed(
                    f"The records are not valid JSON (line {exc.lineno}, column {exc.colno})."
                ) from None
            except ValueError as exc:  # too deep, a non-finite number, unstorable text
                raise ValidationFailed(f"The records are refused: {exc}.") from None
            contribution = services.contribution_upload(
                contributor=_contributor(request), dataset=dataset, records=records
            )
        else:
            raise ValidationFailed("Choose a CSV file or paste JSON records to upload.")
    except ValidationFailed as error:
        refusal_of_error(request=request, action=UPLOAD_REFUSED, error=error, dataset=slug)
        context = {"card": _card(dataset, request), "errors": error.errors, "detail": error.detail}
        context["csv_header"] = ",".join(c["name"] for c in dataset.schema["columns"])
        context["example_records"] = json.dumps([_example_row(dataset.schema)], indent=1)
        return render(request, "datasets/detail.html", context, status=400)
    rows = contribution.rows
    messages.success(
        request, f"{rows} row{'s' if rows != 1 else ''} accepted, encrypted and stored."
    )
    return redirect("datasets:detail", slug=slug)


@roles("compliance")
def new(request: HttpRequest) -> HttpResponse:
    form: dict[str, Any] = {
        "slug": "",
        "name": "",
        "purpose": "",
        "schema": json.dumps(EXAMPLE_SCHEMA, indent=2),
        "total_epsilon": "10",
        "max_query_epsilon": "1",
        "min_contributors": "10",
        "max_rows_per_contributor": "100",
        "auto_approve": False,
        "currency": "EUR",
        "per_query": "1.00",
        "per_epsilon": "5.00",
        "platform_fee": "0.20",
        "retention_days": "365",
    }
    error = ""
    if request.method == "POST":
        form.update({key: request.POST.get(key, "").strip() for key in form})
        form["auto_approve"] = request.POST.get("auto_approve") == "on"
        try:
            try:
                schema = json_input.loads(form["schema"])
            except json.JSONDecodeError:
                raise ValidationFailed("The schema is not valid JSON.") from None
            except ValueError as exc:  # too deep, a non-finite number, unstorable text
                raise ValidationFailed(f"The schema is refused: {exc}.") from None
            dataset = services.dataset_create(
                actor=request.user,  # type: ignore[arg-type]
                slug=form["slug"],
                name=form["name"],
                purpose=form["purpose"],
                schema=schema,
                policy={
                    "total_epsilon": form["total_epsilon"],
                    "max_query_epsilon": form["max_query_epsilon"],
                    "min_contributors": _whole(form["min_contributors"], "min_contributors"),
                    "max_rows_per_contributor": _whole(
                        form["max_rows_per_contributor"], "max_rows_per_contributor"
                    ),
                    "auto_approve": form["auto_approve"],
                },
                price={
                    "currency": form["currency"],
                    "per_query": form["per_query"],
                    "per_epsilon": form["per_epsilon"],
                    "platform_fee": form["platform_fee"],
                },
                retention_days=_whole(form["retention_days"], "retention_days"),
            )
        except DomainError as exc:
            error = exc.detail
        else:
            messages.success(request, f"Dataset {dataset.slug} published.")
            return redirect("datasets:detail", slug=dataset.slug)
    return render(
        request, "datasets/new.html", {"form": form, "error": error}, status=400 if error else 200
    )


def _whole(value: str, name: str) -> int:
    """A whole number typed into a form ("30", "30.0"), in ASCII digits."""
    try:
        number = decimal_number(value)
    except InvalidOperation:
        number = Decimal("NaN")
    if not number.is_finite() or number != number.to_integral_value() or abs(number) > 10**18:
        raise ValidationFailed(f"{name} must be a whole number.")
    return int(number)


@roles("contributor")
@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    overview = selectors.contributor_overview(contributor=_contributor(request))
    losses = overview["privacy_loss"]
    caps = [
        {
            **row,
            "percent": round(min(100.0, 100 * row["epsilon_past_year"] / row["cap"]), 1),
        }
        for row in losses
        if row["cap"]
    ]
    return render(
        request,
        "datasets/dashboard.html",
        {"me": overview, "chart": _privacy_chart(losses), "caps": caps},
    )


def _privacy_chart(losses: list[dict[str, Any]]) -> dict[str, Any]:
    """Horizontal bars of epsilon per dataset, laid out here for an inline SVG."""
    peak = max((float(item["epsilon"]) for item in losses), default=0.0) or 1.0
    bars = []
    for index, item in enumerate(losses):
        value = float(item["epsilon"])
        bars.append(
            {
                "label": item["dataset"],
                "value": f"{value:.4g}",
                "y": 10 + index * 28,
                "width": round(360 * value / peak, 1),
            }
        )
    return {"bars": bars, "height": 20 + 28 * len(bars)}


@roles("contributor")
@require_GET
def export(request: HttpRequest) -> HttpResponseBase:
    return export_response(selectors.contributor_export(contributor=_contributor(request)))


@roles("contributor")
@require_POST
def erase(request: HttpRequest) -> HttpResponse:
    if request.POST.get("confirm") != "erase":
        messages.error(request, 'Type "erase" to confirm that your data should be erased.')
        return redirect("datasets:dashboard")
    services.contributor_erase_request(contributor=_contributor(request))
    messages.success(
        request,
        "Your data key was destroyed and your consents closed; your rows are being removed "
        "from every copy of the pool. Your earnings history stays.",
    )
    return redirect("datasets:dashboard")


# The policy editor: every key the policy knows, how the form shows and reads it.
POLICY_FIELDS: list[tuple[str, str, str]] = [
    # (key, kind, label)
    ("total_epsilon", "decimal", "Total privacy budget (ε)"),
    ("max_query_epsilon", "decimal", "Largest ε per query"),
    ("min_contributors", "whole", "Minimum contributors in the pool"),
    ("max_rows_per_contributor", "whole", "Rows per contributor, at most"),
    ("auto_approve", "boolean", "Approve queries within the policy automatically"),
    ("default_privacy_cap", "decimal", "Default personal cap (ε per year; empty: none)"),
    ("max_epsilon_per_organization", "decimal", "ε per organization, at most (empty: no limit)"),
    ("allowed_organizations", "list", "Organizations that may query (comma-separated; empty: all)"),
    ("allowed_columns", "list", "Columns queries may use (empty: all)"),
    ("allowed_aggregates", "list", "Aggregates queries may use (empty: all)"),
    ("max_groups", "whole", "Groups per query, at most (empty: the default)"),
    ("max_histogram_bins", "whole", "Histogram bins, at most (empty: the default)"),
    ("max_contributors", "whole", "Contributors, at most (bounds delta; empty: 1,000,000)"),
    ("private_keys", "boolean", "Allow grouping by keys that are not public (thresholded)"),
    ("delta", "decimal", "δ per thresholded query (empty: the default)"),
    ("total_delta", "decimal", "Total δ (empty: one over max contributors)"),
]
PRICE_FIELDS = [
    ("currency", "Currency"),
    ("per_query", "Price per query"),
    ("per_epsilon", "Price per ε"),
    ("platform_fee", "Platform fee (a fraction; the rest is shared by the pool)"),
]


def _shown(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return str(value)


def _read_policy_form(post: Any, current: dict[str, Any]) -> dict[str, Any]:
    """The keys the form changed, as a partial policy (an emptied key: null, removed)."""
    patch: dict[str, Any] = {}
    for key, kind, _ in POLICY_FIELDS:
        raw = str(post.get(f"policy.{key}", "")).strip()
        if raw == _shown(current.get(key)):
            continue
        value: Any
        if raw == "":
            value = None
        elif kind == "boolean":
            value = {"yes": True, "no": False}.get(raw, raw)
        elif kind == "whole":
            value = int(raw) if raw.isascii() and raw.isdigit() else raw
        elif kind == "list":
            value = [item.strip() for item in raw.split(",") if item.strip()]
        else:
            value = raw
        patch[key] = value
    return patch


def _editor_changes(request: HttpRequest, dataset: Any) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    policy = _read_policy_form(request.POST, dataset.policy)
    if policy:
        changes["policy"] = policy
    price = {key: request.POST.get(f"price.{key}", "").strip() for key, _ in PRICE_FIELDS}
    if price != {key: str(dataset.price.get(key, "")) for key, _ in PRICE_FIELDS}:
        changes["price"] = price
    retention = request.POST.get("retention_days", "").strip()
    if retention != str(dataset.retention_days):
        changes["retention_days"] = _whole(retention, "retention_days")
    purpose = request.POST.get("purpose", "").strip()
    if purpose != dataset.purpose:
        changes["purpose"] = purpose
    return changes


@roles("compliance")
@require_http_methods(["GET", "POST"])
def policy_edit(request: HttpRequest, slug: str) -> HttpResponse:
    """Edit a dataset's policy: review the diff (a dry run), then confirm it."""
    dataset = selectors.dataset_get(slug=slug)
    context: dict[str, Any] = {"dataset": dataset, "plan": None, "error": ""}
    status = 200
    if request.method == "POST":
        try:
            if request.POST.get("step") == "apply":
                changes = json_input.loads(request.POST.get("changes", "{}"))
                if not isinstance(changes, dict):
                    raise ValidationFailed("The reviewed changes are missing; review again.")
                plan = services.dataset_update_plan(dataset=dataset, changes=changes)
                updated = services.dataset_update(
                    actor=request.user,  # type: ignore[arg-type]
                    dataset=dataset,
                    changes=changes,
                )
                leaving = plan["contributors_leaving"]
                messages.success(
                    request,
                    f"Policy of {updated.name} saved (terms version {updated.terms_version})."
                    + (
                        f" {leaving} contributor{'s' if leaving != 1 else ''} left the pool "
                        "until they consent to the new terms."
                        if plan["needs_reconsent"]
                        else " Every contributor stays in the pool."
                    ),
                )
                return redirect("datasets:detail", slug=slug)
            changes = _editor_changes(request, dataset)
            if not changes:
                context["error"] = "Nothing changed."
            else:
                context["plan"] = services.dataset_update_plan(dataset=dataset, changes=changes)
                context["changes_json"] = json.dumps(changes)
        except (DomainError, json.JSONDecodeError, ValueError) as error:
            context["error"] = getattr(error, "detail", "The reviewed changes are not readable.")
            status = getattr(error, "status_code", 400)
    values = request.POST if request.method == "POST" and context["plan"] is None else None
    context["policy_fields"] = [
        {
            "name": f"policy.{key}",
            "kind": kind,
            "label": label,
            "value": values.get(f"policy.{key}", "") if values else _shown(dataset.policy.get(key)),
        }
        for key, kind, label in POLICY_FIELDS
    ]
    context["price_fields"] = [
        {
            "name": f"price.{key}",
            "label": label,
            "value": values.get(f"price.{key}", "") if values else dataset.price.get(key, ""),
        }
        for key, label in PRICE_FIELDS
    ]
    context["retention_days"] = (
        values.get("retention_days", "") if values else dataset.retention_days
    )
    context["purpose"] = values.get("purpose", "") if values else dataset.purpose
    context["pool"] = selectors.pool_size(dataset=dataset)
    return render(request, "datasets/policy.html", context, status=status)
