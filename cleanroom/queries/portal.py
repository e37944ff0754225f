"""Portal pages of queries: SQL editor with preview, status with live progress, results with
intervals and a chart, downloads, and the compliance review queue.

The pages call the same services and selectors as the API; a DomainError is shown with
its plain message (and the status code of the API), nothing changed.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from cleanroom.datasets.selectors import dataset_get_visible, dataset_list_visible
from cleanroom.errors import DomainError, Forbidden, NotFound
from cleanroom.queries import selectors, services
from cleanroom.queries.api import money, result_download
from cleanroom.queries.charts import budget_chart, small_multiples
from cleanroom.queries.models import Query, QueryStatus
from cleanroom.refusals import QUERY_REFUSED, refusal_of_error
from portal.access import roles

TERMINAL = (QueryStatus.RELEASED, QueryStatus.FAILED, QueryStatus.REJECTED)


def _rows(query: Query) -> list[list[dict[str, Any]]]:
    """Result cells paired with their intervals for the template."""
    result = query.result or {}
    out = []
    for row, intervals in zip(result.get("rows", []), result.get("accuracy", []), strict=False):
        cells = []
        for value, interval in zip(row, intervals, strict=False):
            cells.append(
                {
                    "value": _display(value),
                    "interval": [_display(interval[0]), _display(interval[1])]
                    if interval
                    else None,
                    "numeric": isinstance(value, int | float) and not isinstance(value, bool),
                }
            )
        out.append(cells)
    return out


def _numeric_columns(query: Query) -> list[bool]:
    """Per result column: is it a released number (right-aligned, header too)?"""
    result = query.result or {}
    aggregates = {entry["column"] for entry in result.get("column_accuracy", [])}
    return [name in aggregates for name in result.get("columns", [])]


def _display(value: Any) -> Any:
    if value is None:
        return "—"  # not released: e.g. a mean whose noisy count is below 1
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return value


@roles("business", "compliance")
@require_GET
def query_list(request: HttpRequest) -> HttpResponse:
    queries = selectors.query_list(user=request.user)[:200]
    return render(request, "queries/list.html", {"queries": queries})


def _example_index(value: str | None, count: int) -> int:
    """?example=N (0-based) among the dataset's examples; anything else: the first."""
    if value and value.isascii() and value.isdigit() and int(value) < count:
        return int(value)
    return 0


@roles("business")
@require_http_methods(["GET", "POST"])
def query_new(request: HttpRequest) -> HttpResponse:
    # The same visibility as the API: a dataset restricted to other organizations is
    # neither listed nor selectable (a ?dataset= naming it reads like a missing slug).
    datasets = dataset_list_visible(user=request.user)
    slug = request.POST.get("dataset") or request.GET.get("dataset") or ""
    if not slug and datasets:
        slug = datasets[0].slug
    selected = next((d for d in datasets if d.slug == slug), None)
    examples = selectors.query_examples(dataset=selected) if selected else []
    # A new dataset starts from its own examples: a query naming another dataset's
    # columns is never carried over (the dataset is chosen by a GET, without the SQL).
    chosen = _example_index(request.GET.get("example"), len(examples))
    sql = request.POST.get("sql") or (examples[chosen]["sql"] if examples else "")
    epsilon = request.POST.get("epsilon", "0.5")
    error = ""
    status = 200
    if request.method == "POST":
        try:
            query = services.query_submit(
                dataset=slug, sql=sql, epsilon=epsilon, requester=request.user
            )
        except DomainError as refused:
            refusal_of_error(request=request, action=QUERY_REFUSED, error=refused, dataset=slug)
            error, status = refused.detail, refused.status_code
        else:
            messages.success(request, f"Query {query.pk} submitted ({query.status}).")
            return redirect("queries:detail", pk=query.pk)
    return render(
        request,
        "queries/new.html",
        {
            "datasets": datasets,
            "selected": selected,
            "examples": examples,
            "remaining": selected.total_epsilon - selected.spent_epsilon if selected else None,
            "slug": slug,
            "sql": sql,
            "epsilon": epsilon,
            "error": error,
        },
        status=status,
    )


@roles("business")
@require_POST
def query_preview(request: HttpRequest) -> HttpResponse:
    """The preview fragment (htmx): epsilon, price and expected accuracy; spends nothing."""
    context: dict[str, Any] = {}
    status = 200
    try:
        preview = services.query_preview(
            dataset=request.POST.get("dataset", ""),
            sql=request.POST.get("sql", ""),
            epsilon=request.POST.get("epsilon") or None,
            requester=request.user,
        )
        context["preview"] = preview
    except DomainError as refused:
        dataset = request.POST.get("dataset", "")
        refusal_of_error(request=request, action=QUERY_REFUSED, error=refused, dataset=dataset)
        context["error"] = refused.detail
        status = 200 if request.headers.get("HX-Request") else refused.status_code
    return render(request, "queries/_preview.html", context, status=status)


def _detail_context(request: HttpRequest, query: Query) -> dict[str, Any]:
    return {
        "query": query,
        "rows": _rows(query),
        "columns": (query.result or {}).get("columns", []),
        "charts": small_multiples(query.result) if query.status == QueryStatus.RELEASED else [],
        "numeric_names": [
            name
            for name, numeric in zip(
                (query.result or {}).get("columns", []), _numeric_columns(query), strict=False
            )
            if numeric
        ],
        "price": money(query.price),
        "terminal": query.status in TERMINAL,
        "is_compliance": getattr(request.user, "role", None) == "compliance",
    }


@roles("business", "compliance")
@require_GET
def query_detail(request: HttpRequest, pk: int) -> HttpResponse:
    query = selectors.query_get(user=request.user, pk=pk)
    return render(request, "queries/detail.html", _detail_context(request, query))


@roles("business", "compliance")
@require_GET
def query_status(request: HttpRequest, pk: int) -> HttpResponse:
    """The live part of the status page; htmx polls it until the query is final."""
    query = selectors.query_get(user=request.user, pk=pk)
    response = render(request, "queries/_status.html", _detail_context(request, query))
    if query.status in TERMINAL and request.headers.get("HX-Request"):
        # Reload once so the result table, chart and downloads appear.
        response["HX-Refresh"] = "true"
    return response


@roles("business", "compliance")
@require_GET
def query_download(request: HttpRequest, pk: int, kind: str) -> HttpResponseBase:
    if kind not in ("csv", "json"):
        raise NotFound("Downloads are .csv or .json.")
    query = selectors.query_get(user=request.user, pk=pk)
    if query.status != QueryStatus.RELEASED:
        raise Forbidden("This query has no released result.")
    return result_download(query, kind)


@roles("compliance")
@require_GET
def review_queue(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "queries/review.html",
        {
            "queries": selectors.review_queue(),
            "datasets": dataset_list_visible(user=request.user),
        },
    )


def _after_review(request: HttpRequest, pk: int) -> HttpResponse:
    if request.POST.get("next") == "detail":
        return redirect("queries:detail", pk=pk)
    return redirect("queries:review")


@roles("compliance")
@require_POST
def query_approve(request: HttpRequest, pk: int) -> HttpResponse:
    try:
        services.query_approve(
            query_id=pk, reviewer=request.user, reason=request.POST.get("reason", "")
        )
        messages.success(request, f"Query {pk} approved and queued.")
    except DomainError as refused:
        messages.error(request, refused.detail)
    return _after_review(request, pk)


@roles("compliance")
@require_POST
def query_reject(request: HttpRequest, pk: int) -> HttpResponse:
    try:
        services.query_reject(
            query_id=pk, reviewer=request.user, reason=request.POST.get("reason", "")
        )
        messages.success(request, f"Query {pk} rejected.")
    except DomainError as refused:
        messages.error(request, refused.detail)
    return _after_review(request, pk)


@roles("compliance")
@require_GET
def budget(request: HttpRequest, slug: str) -> HttpResponse:
    dataset = dataset_get_visible(slug=slug, user=request.user)
    summary = selectors.budget_summary(dataset=dataset)
    return render(
        request,
        "queries/budget.html",
        {
            "dataset": dataset,
            "summary": summary,
            "chart": budget_chart(summary["history"], summary["total_epsilon"]),
        },
    )
