"""Compliance audit pages (read-only): events with filters and paging, a query's whole story,
privacy budget over time, credential checks, exports, and the log's verification status.

The pages use the same selectors as the API; a DomainError (a bad filter) is shown with its
plain message and the API's status code.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, reverse
from django.views.decorators.http import require_GET

from audit import charts, keys, selectors
from audit.models import AuditEvent
from cleanroom.errors import ValidationFailed
from cleanroom.numbers import whole_number
from portal.access import roles
from portal.templatetags.display import epsilon_text, money_text

View = Callable[..., HttpResponseBase]
PAGE_SIZE = 50


def compliance_only(view: View) -> View:
    """Compliance officers only, and read-only (GET)."""
    return roles("compliance")(require_GET(view))


def _query_string(filters: selectors.EventFilter, **extra: str) -> str:
    from urllib.parse import urlencode

    return urlencode({**filters.as_params(), **extra})


def _subject_link(subject: str) -> str | None:
    kind, _, value = subject.partition(":")
    return value if kind == "query" and whole_number(value) is not None else None


# Payload keys that hold an epsilon (12 decimals in the log), shown without the noise.
EPSILON_KEYS = {"epsilon", "spent_epsilon", "total_epsilon", "target_epsilon"}
# Payload keys that name another record: shown in the subjects' id scheme.
ID_KEYS = {"organization", "contribution", "entry", "settlement", "payout", "query"}


def payload_fields(payload: Any) -> list[tuple[str, str]]:
    """A payload as readable (label, value) pairs, in the log's key order."""
    if not isinstance(payload, dict):
        return [("value", json.dumps(payload))]
    fields = []
    for key, value in payload.items():
        if value is None or value == "":
            shown = "—"
        elif key in EPSILON_KEYS:
            shown = epsilon_text(value)
        elif key == "price" and isinstance(value, int) and not isinstance(value, bool):
            shown = money_text(Decimal(value) / 1_000_000, str(payload.get("currency", "")))
        elif key in ID_KEYS and isinstance(value, int) and not isinstance(value, bool):
            shown = f"{key}:{value}"
        elif isinstance(value, bool):
            shown = "yes" if value else "no"
        elif isinstance(value, dict | list):
            shown = json.dumps(value, separators=(", ", ": "))
        else:
            shown = str(value)
        fields.append((key.replace("_", " "), shown))
    return fields


@compliance_only
def events(request: HttpRequest) -> HttpResponse:
    filters = selectors.EventFilter.from_params(request.GET)
    paginator = Paginator(selectors.event_list(filters=filters, newest_first=True), PAGE_SIZE)
    page = paginator.get_page(request.GET.get("page"))
    listed = list(page.object_list)
    actors = selectors.actor_ids(events=listed)
    rows = [
        {
            "event": event,
            "actor": actors[event.seq],
            "query": _subject_link(event.subject),
            "fields": payload_fields(event.payload),
        }
        for event in listed
    ]
    return render(
        request,
        "audit/events.html",
        {
            "filters": filters,
            "raw": {
                k: request.GET.get(k, "")
                for k in ("action", "actor", "dataset", "subject", "since", "until")
            },
            "page": page,
            "rows": rows,
            "query_string": _query_string(filters),
            "actions": selectors.action_names(),
        },
    )


@compliance_only
def event_detail(request: HttpRequest, seq: int) -> HttpResponse:
    event = selectors.event_get(seq=seq)
    latest = selectors.checkpoint_latest()
    proof = None
    if latest is not None and seq <= latest.tree_size:
        from audit import chain

        proof = selectors.inclusion_proof_get(seq=seq)
        proof["verified"] = chain.verify_inclusion(
            bytes.fromhex(proof["leaf_hash"]),
            seq - 1,
            proof["tree_size"],
            [bytes.fromhex(p) for p in proof["proof"]],
            bytes.fromhex(proof["root"]),
        )
    return render(
        request,
        "audit/event.html",
        {
            "event": event,
            "actor": selectors.actor_ids(events=[event])[event.seq],
            "fields": payload_fields(event.payload),
            "payload": json.dumps(event.payload, indent=2),
            "proof": proof,
            "query": _subject_link(event.subject),
        },
    )


@compliance_only
def query_lookup(request: HttpRequest) -> HttpResponse:
    raw = request.GET.get("query", "").strip().removeprefix("query:")
    query_id = whole_number(raw)
    if query_id is None:
        raise ValidationFailed(f"A query is named by its number, not {raw[:40]!r}.")
    return redirect("audit:query", query_id=query_id)


def _story_summary(story: list[AuditEvent]) -> dict[str, Any]:
    """The answers compliance asks for, read off the events themselves."""
    summary: dict[str, Any] = {"approvals": [], "charges": [], "distributions": [], "budget": []}
    for event in story:
        payload = event.payload if isinstance(event.payload, dict) else {}
        if event.action == "cleanroom.query.submitted":
            summary["submitted"] = event
            summary["dataset"] = event.dataset
            summary["epsilon"] = payload.get("epsilon")
            organization = payload.get("organization")
            if isinstance(organization, int):
                # An organization's name is not personal data; the log keeps only its pk.
                summary["organization"] = selectors.organization_name(pk=organization)
        elif event.action in ("cleanroom.query.approved", "cleanroom.query.rejected"):
            summary["approvals"].append(event)
        elif event.action in selectors.BUDGET_ACTIONS:
            summary["budget"].append(event)
        elif event.action == "payouts.query.charged":
            summary["charges"].append(event)
        elif event.action == "payouts.distribution.recorded":
            summary["distributions"].append(event)
        elif event.action in ("cleanroom.query.released", "cleanroom.query.failed"):
            summary["outcome"] = event
    return summary


@compliance_only
def query_story(request: HttpRequest, query_id: int) -> HttpResponse:
    story = selectors.query_story(query_id=query_id)
    try:  # the SQL and the result live in the queries pages (the log holds no query text)
        query_page = reverse("queries:detail", args=[query_id])
    except NoReverseMatch:
        query_page = ""
    return render(
        request,
        "audit/query.html",
        {
            "query_id": query_id,
            "query_page": query_page,
            "story": [{"event": e, "payload": json.dumps(e.payload)} for e in story],
            "summary": _story_summary(story),
        },
    )


@compliance_only
def budget(request: HttpRequest) -> HttpResponse:
    filters = selectors.EventFilter.from_params(request.GET)
    series = selectors.budget_series(filters=filters)
    datasets = []
    for slug, points in sorted(series.items()):
        total = points[-1].total
        datasets.append(
            {
                "slug": slug,
                "points": points,
                "spent": points[-1].spent,
                "total": total,
                "remaining": total - points[-1].spent,
                "chart": charts.budget_line_chart(
                    [(p.at, p.spent) for p in points],
                    total,
                    title=f"Privacy budget spent on {slug} over time",
                ),
            }
        )
    return render(
        request,
        "audit/budget.html",
        {
            "datasets": datasets,
            "raw": {k: request.GET.get(k, "") for k in ("dataset", "since", "until")},
        },
    )


@compliance_only
def credentials(request: HttpRequest) -> HttpResponse:
    filters = selectors.EventFilter.from_params(request.GET)
    checks = selectors.presentation_checks(filters=filters)
    page = Paginator(checks, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request,
        "audit/credentials.html",
        {
            "page": page,
            "reasons": selectors.refusal_reasons(filters=filters),
            "accepted": checks.filter(action="identity.presentation.accepted").count(),
            "refused": checks.filter(action="identity.presentation.refused").count(),
            "raw": {k: request.GET.get(k, "") for k in ("since", "until")},
            "query_string": _query_string(filters),
        },
    )


@compliance_only
def verification(request: HttpRequest) -> HttpResponse:
    report = selectors.log_verify()
    latest = selectors.checkpoint_latest()
    return render(
        request,
        "audit/verify.html",
        {
            "report": report,
            "checkpoint": selectors.checkpoint_data(latest) if latest else None,
            "key_id": keys.current_key_id(),
        },
    )


CSV_COLUMNS = ["seq", "at", "actor", "action", "subject", "dataset", "payload", "prev_hash", "hash"]


def _csv_rows(filters: selectors.EventFilter) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for event in selectors.event_list(filters=filters).iterator(chunk_size=2000):
        row = selectors.event_row(event)
        writer.writerow([json.dumps(row[c]) if c == "payload" else row[c] for c in CSV_COLUMNS])
        if buffer.tell() > 64_000:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


@compliance_only
def export_csv(request: HttpRequest) -> StreamingHttpResponse:
    filters = selectors.EventFilter.from_params(request.GET)
    response = StreamingHttpResponse(_csv_rows(filters), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="audit-events.csv"'
    return response


def _jsonl_rows(filters: selectors.EventFilter) -> Iterator[bytes]:
    for event in selectors.event_list(filters=filters).iterator(chunk_size=2000):
        yield json.dumps(selectors.event_row(event), sort_keys=True).encode() + b"\n"


@compliance_only
def export_jsonl(request: HttpRequest) -> StreamingHttpResponse:
    filters = selectors.EventFilter.from_params(request.GET)
    response = StreamingHttpResponse(_jsonl_rows(filters), content_type="application/jsonl")
    response["Content-Disposition"] = 'attachment; filename="audit-events.jsonl"'
    return response


@compliance_only
def export_log(request: HttpRequest) -> StreamingHttpResponse:
    """The whole log with checkpoints, for the offline verifier."""
    response = StreamingHttpResponse(selectors.export_lines(), content_type="application/jsonl")
    response["Content-Disposition"] = 'attachment; filename="audit-export.jsonl"'
    return response


@compliance_only
def public_key(request: HttpRequest) -> HttpResponse:
    response = HttpResponse(keys.public_key_pem(), content_type="application/x-pem-file")
    response["Content-Disposition"] = 'attachment; filename="audit_public_key.pem"'
    return response
