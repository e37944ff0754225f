"""REST views of queries: thin DRF views with nested Input/Output serializers.

Every rule lives in ``services``/``selectors``; a refused query answers 400 (402 for the
balance) with the construct named in ``detail`` and nothing changed.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from django.core.validators import RegexValidator
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from cleanroom.datasets.selectors import dataset_get
from cleanroom.errors import NotFound, ValidationFailed
from cleanroom.idempotency import idempotent
from cleanroom.permissions import IsBusiness, IsBusinessOrCompliance, IsCompliance
from cleanroom.queries import selectors, services
from cleanroom.queries.models import Query, QueryStatus
from cleanroom.refusals import QUERY_REFUSED
from cleanroom.streaming import JsonBatch, chunked, json_chunks


def money(micro: int) -> str:
    return f"{(Decimal(micro) / Decimal(1_000_000)).quantize(Decimal('0.000001'))}"


@extend_schema_field(OpenApiTypes.NUMBER)
class EpsilonField(serializers.Field):
    """Accepts a JSON number or a decimal string; the service validates the value."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, bool) or not isinstance(data, int | float | str):
            raise serializers.ValidationError("epsilon must be a number.")
        return data

    def to_representation(self, value: Any) -> Any:
        return value


NOT_BLANK = RegexValidator(r"\S", "This field may not be blank.")


class QueryInput(serializers.Serializer):
    dataset = serializers.CharField(max_length=100, trim_whitespace=False)
    sql = serializers.CharField(max_length=10_000, trim_whitespace=False, validators=[NOT_BLANK])
    epsilon = EpsilonField(required=False, allow_null=True)


class QueryOutput(serializers.Serializer):
    id = serializers.IntegerField()
    dataset = serializers.CharField()
    organization = serializers.CharField()
    requester = serializers.CharField()
    sql = serializers.CharField()
    epsilon = serializers.FloatField(help_text="charged for the replace-one relation")
    delta = serializers.FloatField()
    status = serializers.ChoiceField(choices=QueryStatus.values)
    progress = serializers.IntegerField(help_text="percent")
    price = serializers.CharField(help_text="decimal string, e.g. '6.500000'")
    currency = serializers.CharField()
    result = serializers.JSONField(
        allow_null=True, help_text="{columns, rows, accuracy, ...} once released, else null"
    )
    error = serializers.CharField(allow_null=True)
    review_reason = serializers.CharField(allow_null=True)
    created_at = serializers.CharField(help_text="ISO 8601 date-time")
    updated_at = serializers.CharField(help_text="ISO 8601 date-time")
    released_at = serializers.CharField(allow_null=True, help_text="ISO 8601 date-time")

    class Meta:
        ref_name = "Query"


class QuerySubmitOutput(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.ChoiceField(choices=QueryStatus.values)
    epsilon = serializers.FloatField()
    price = serializers.CharField(help_text="decimal string, held until the query runs")


class BudgetOutput(serializers.Serializer):
    total_epsilon = serializers.FloatField()
    spent_epsilon = serializers.FloatField()
    remaining_epsilon = serializers.FloatField()
    total_delta = serializers.FloatField()
    spent_delta = serializers.FloatField()
    remaining_delta = serializers.FloatField()
    privacy_unit = serializers.CharField()
    charged_epsilon = serializers.FloatField(required=False, help_text="compliance only")
    reserved_epsilon = serializers.FloatField(required=False, help_text="compliance only")
    by_organization = serializers.ListField(
        child=serializers.DictField(), required=False, help_text="compliance only"
    )
    history = serializers.ListField(
        child=serializers.DictField(), required=False, help_text="compliance only"
    )

    class Meta:
        ref_name = "DatasetBudget"


def query_output(query: Query) -> dict[str, Any]:
    return {
        "id": query.pk,
        "dataset": query.dataset.slug,
        "organization": query.organization.name,
        "requester": query.requester.username,
        "sql": query.sql,
        "epsilon": float(query.epsilon),
        "delta": query.delta or 0.0,
        "status": query.status,
        "progress": query.progress,
        "price": money(query.price),
        "currency": query.currency,
        "result": query.result if query.status == QueryStatus.RELEASED else None,
        "error": query.error or None,
        "review_reason": query.review_reason or None,
        "created_at": query.created_at.isoformat(),
        "updated_at": query.updated_at.isoformat(),
        "released_at": query.released_at.isoformat() if query.released_at else None,
    }


def _input(request: Request) -> dict[str, Any]:
    if not isinstance(request.data, dict):
        raise ValidationFailed("The body must be a JSON object.")
    serializer = QueryInput(data=request.data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


class QueryPreviewApi(APIView):
    permission_classes = [IsBusiness]
    refusal_action = QUERY_REFUSED  # a refused query is audited (cleanroom.refusals)

    class OutputSerializer(serializers.Serializer):
        dataset = serializers.CharField()
        epsilon = serializers.FloatField()
        delta = serializers.FloatField()
        privacy_unit = serializers.CharField()
        price = serializers.CharField()
        currency = serializers.CharField()
        columns = serializers.ListField(child=serializers.CharField())
        accuracy = serializers.ListField(child=serializers.DictField())
        warnings = serializers.ListField(
            child=serializers.CharField(),
            help_text="Plain sentences for cells whose expected error is large for their size.",
        )
        groups = serializers.IntegerField()
        pool_size = serializers.IntegerField()
        remaining_epsilon = serializers.FloatField()
        remaining_delta = serializers.FloatField()
        fits_budget = serializers.BooleanField()
        balance_refusal = serializers.CharField(
            allow_null=True,
            help_text="Null, or why submitting now would be refused for the balance (top up).",
        )
        auto_approve = serializers.BooleanField()
        threshold = serializers.IntegerField(allow_null=True)

    @extend_schema(request=QueryInput, responses=OutputSerializer)
    def post(self, request: Request) -> Response:
        data = _input(request)
        preview = services.query_preview(
            dataset=data["dataset"],
            sql=data["sql"],
            epsilon=data.get("epsilon"),
            requester=request.user,
        )
        preview["price"] = money(preview["price"])
        return Response(preview)


class QueryListApi(APIView):
    refusal_action = QUERY_REFUSED  # a refused submission is audited (cleanroom.refusals)

    def get_permissions(self) -> list[Any]:
        if self.request.method == "POST":
            return [IsBusiness()]
        return [IsBusinessOrCompliance()]

    @extend_schema(
        request=QueryInput, responses={202: QuerySubmitOutput}, operation_id="queries_submit"
    )
    @idempotent
    def post(self, request: Request) -> Response:
        data = _input(request)
        query = services.query_submit(
            dataset=data["dataset"],
            sql=data["sql"],
            epsilon=data.get("epsilon"),
            requester=request.user,
        )
        return Response(
            QuerySubmitOutput(
                {
                    "id": query.pk,
                    "status": query.status,
                    "epsilon": float(query.epsilon),
                    "price": money(query.price),
                }
            ).data,
            status=status.HTTP_202_ACCEPTED,
        )

    @extend_schema(responses=QueryOutput(many=True), operation_id="queries_list")
    def get(self, request: Request) -> Response:
        wanted = request.query_params.get("status") or None
        if wanted and wanted not in QueryStatus.values:
            raise ValidationFailed(f"status must be one of {', '.join(QueryStatus.values)}.")
        queries = selectors.query_list(user=request.user, status=wanted)[:500]
        return Response(QueryOutput([query_output(query) for query in queries], many=True).data)


class QueryDetailApi(APIView):
    permission_classes = [IsBusinessOrCompliance]

    @extend_schema(responses=QueryOutput, operation_id="queries_retrieve")
    def get(self, request: Request, pk: int) -> Response:
        query = selectors.query_get(user=request.user, pk=pk)
        return Response(QueryOutput(query_output(query)).data)


class ReviewInput(serializers.Serializer):
    reason = serializers.CharField(
        max_length=2000, required=False, allow_blank=True, trim_whitespace=True
    )


class QueryApproveApi(APIView):
    permission_classes = [IsCompliance]

    @extend_schema(request=ReviewInput, responses=QueryOutput)
    @idempotent
    def post(self, request: Request, pk: int) -> Response:
        serializer = ReviewInput(data=request.data if isinstance(request.data, dict) else {})
        serializer.is_valid(raise_exception=True)
        query = services.query_approve(
            query_id=pk, reviewer=request.user, reason=serializer.validated_data.get("reason", "")
        )
        return Response(QueryOutput(query_output(query)).data)


class QueryRejectApi(APIView):
    permission_classes = [IsCompliance]

    @extend_schema(request=ReviewInput, responses=QueryOutput)
    @idempotent
    def post(self, request: Request, pk: int) -> Response:
        serializer = ReviewInput(data=request.data if isinstance(request.data, dict) else {})
        serializer.is_valid(raise_exception=True)
        query = services.query_reject(
            query_id=pk, reviewer=request.user, reason=serializer.validated_data.get("reason", "")
        )
        return Response(QueryOutput(query_output(query)).data)


def result_download(query: Query, kind: str) -> StreamingHttpResponse:
    """The released result as CSV (value, low, high per aggregate) or JSON, streamed."""
    result = query.result or {"columns": [], "rows": [], "accuracy": []}
    if kind == "json":
        body = {"query": query.pk, "dataset": query.dataset.slug, "epsilon": float(query.epsilon)}
        body |= result | {"rows": (JsonBatch(batch) for batch in _batches(result["rows"]))}
        response = StreamingHttpResponse(json_chunks(body), content_type="application/json")
        response["Content-Disposition"] = f'attachment; filename="query-{query.pk}.json"'
        return response
    response = StreamingHttpResponse(
        chunked(_csv_lines(result)), content_type="text/csv; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="query-{query.pk}.csv"'
    return response


def _batches(rows: list[Any], size: int = 1000) -> Iterator[list[Any]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def _csv_lines(result: dict[str, Any]) -> Iterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def line(cells: list[Any]) -> bytes:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow(cells)
        return buffer.getvalue().encode()

    header: list[str] = []
    aggregate_columns = {entry["column"] for entry in result.get("column_accuracy", [])}
    for name in result["columns"]:
        header.append(name)
        if name in aggregate_columns:
            header.extend([f"{name}_low95", f"{name}_high95"])
    yield line(header)
    for row, intervals in zip(result["rows"], result["accuracy"], strict=False):
        cells: list[Any] = []
        for name, value, interval in zip(result["columns"], row, intervals, strict=False):
            cells.append(_csv_cell(value))
            if name in aggregate_columns:
                cells.extend(
                    [_csv_cell(interval[0]), _csv_cell(interval[1])] if interval else ["", ""]
                )
        yield line(cells)


def _csv_cell(value: Any) -> Any:
    # Neutralize spreadsheet formulas in text cells (category labels come from the schema).
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value
    return "" if value is None else value


class QueryResultDownloadApi(APIView):
    permission_classes = [IsBusinessOrCompliance]

    @extend_schema(responses={(200, "text/csv"): str})
    def get(self, request: Request, pk: int) -> StreamingHttpResponse:
        query = selectors.query_get(user=request.user, pk=pk)
        if query.status != QueryStatus.RELEASED:
            raise ValidationFailed(f"Query {query.pk} has no result yet ({query.status}).")
        kind = request.query_params.get("as", "csv")
        if kind not in ("csv", "json"):
            raise ValidationFailed("as must be csv or json.")
        return result_download(query, kind)


class DatasetBudgetApi(APIView):
    permission_classes = [IsBusinessOrCompliance]

    @extend_schema(responses=BudgetOutput)
    def get(self, request: Request, slug: str) -> Response:
        dataset = dataset_get(slug=slug)
        if not selectors.dataset_visible_to(dataset=dataset, user=request.user):
            raise NotFound(f"No dataset named {slug!r}.")
        summary = selectors.budget_summary(dataset=dataset)
        if getattr(request.user, "role", None) != "compliance":
            # Businesses see the public totals, not who spent what.
            summary = {key: summary[key] for key in selectors.PUBLIC_BUDGET_FIELDS}
        return Response(BudgetOutput(summary).data)
