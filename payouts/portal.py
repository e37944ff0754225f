"""Portal pages of money: the business billing page (balance, top-up, charges), the
contributor's earnings page (balance, shares, payouts, destination, proofs) and the
compliance pages (distributions, settlements with "settle now", payouts, reconciliation).
They call the same services and selectors as the API."""

from __future__ import annotations

from django.contrib import messages
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.views.decorators.http import require_http_methods

from cleanroom.errors import DomainError
from payouts import selectors, services
from payouts.money import micro_format, micro_parse
from payouts.reconcile import ledger_reconcile
from portal.access import roles


def bars_svg(
    values: list[tuple[str, int]], *, unit: str = "", width: int = 640, height: int = 120
) -> SafeString:
    """A server-rendered bar chart of micro-unit amounts (no script, no network).

    Amounts stay integers; only the bars' pixel geometry is computed in floating point.
    """
    if not values:
        return format_html("<p>No charges yet.</p>")
    top = max(v for _, v in values) or 1
    step = min(width / len(values), 28.0)  # a few charges: narrow bars, not one slab
    bars = format_html_join(
        "",
        '<rect x="{}" y="{}" width="{}" height="{}" fill="#2457c5"><title>{}: {}</title></rect>',
        (
            (
                f"{i * step + 1:.1f}",
                f"{height - v * (height - 4) / top:.1f}",
                f"{max(step - 2, 1):.1f}",
                f"{v * (height - 4) / top:.1f}",
                label,
                micro_format(v),
            )
            for i, (label, v) in enumerate(values)
        ),
    )
    return format_html(
        '<svg role="img" aria-label="charges per query, oldest left" viewBox="0 0 {} {}" '
        'width="100%" height="{}" preserveAspectRatio="xMinYMax meet">{}'
        '<line x1="0" y1="{}" x2="{}" y2="{}" stroke="#dde2ea"/></svg>'
        '<p class="num chart-caption">largest: {} {}</p>',
        width,
        height,
        height,
        bars,
        height,
        width,
        height,
        micro_format(top),
        unit,
    )


@roles("business")
@require_http_methods(["GET", "POST"])
def billing(request: HttpRequest) -> HttpResponse:
    organization = getattr(request.user, "organization", None)
    assert organization is not None  # a business user always belongs to one
    error = ""
    if request.method == "POST":
        try:
            amount = micro_parse(request.POST.get("amount", ""))
            services.topup_record(
                organization=organization,
                amount=amount,
                actor=request.user,
                reference=request.POST.get("reference", "")[:80],
            )
        except DomainError as exc:
            error = exc.detail
        else:
            messages.success(request, "Top-up recorded.")
            return redirect("payouts:billing")
    summary = selectors.billing_summary(organization=organization)
    chart = bars_svg(
        [
            (f"query {c['query']}", micro_parse(c["amount"], positive=False))
            for c in reversed(summary["charges"][:40])
        ],
        unit=summary["currency"],
    )
    return render(
        request,
        "payouts/billing.html",
        {"summary": summary, "error": error, "chart": chart},
        status=400 if error else 200,
    )


@roles("contributor")
@require_http_methods(["GET", "POST"])
def earnings(request: HttpRequest) -> HttpResponse:
    contributor = request.user.contributor  # type: ignore[union-attr]
    error = ""
    if request.method == "POST":
        try:
            services.payout_destination_set(
                contributor=contributor,
                holder_name=request.POST.get("holder_name", ""),
                iban=request.POST.get("iban", ""),
            )
        except DomainError as exc:
            error = exc.detail
        else:
            messages.success(request, "Payout destination saved.")
            return redirect("payouts:earnings")
    detail = selectors.contributor_earnings_detail(contributor=contributor)
    return render(
        request,
        "payouts/earnings.html",
        {"detail": detail, "error": error, "schedule": selectors.payout_schedule()},
        status=400 if error else 200,
    )


@roles("compliance")
def distributions(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "payouts/distributions.html",
        {"rows": selectors.distributions_list(limit=200)},
    )


@roles("compliance")
@require_http_methods(["GET", "POST"])
def settlements(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        from payouts.tasks import settlement_run

        user_pk = request.user.pk
        transaction.on_commit(lambda: settlement_run.delay(requested_by=user_pk))
        messages.success(request, "Settlement queued: it runs on a worker.")
        return redirect("payouts:settlements")
    # The table refreshes itself (htmx) while a queued settlement runs on a worker.
    template = (
        "payouts/_settlements_table.html"
        if request.GET.get("partial")
        else "payouts/settlements.html"
    )
    return render(request, template, {"rows": selectors.settlements_list(limit=200)})


@roles("compliance")
def payouts(request: HttpRequest) -> HttpResponse:
    status = request.GET.get("status", "")
    return render(
        request,
        "payouts/payouts.html",
        {"rows": selectors.payouts_list(status=status, limit=200), "status": status},
    )


@roles("compliance")
def reconciliation(request: HttpRequest) -> HttpResponse:
    return render(request, "payouts/reconciliation.html", {"report": ledger_reconcile()})
