"""Audit REST endpoints (compliance reads; the public key is public)."""

from __future__ import annotations

from typing import Any

from django.http import StreamingHttpResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from audit import keys
from audit.models import AuditCheckpoint
from audit.selectors import (
    EventFilter,
    checkpoint_data,
    checkpoint_latest,
    consistency_proof_get,
    event_list,
    event_row,
    export_lines,
    inclusion_proof_get,
    log_verify,
)
from audit.services import checkpoint_create
from cleanroom.errors import ValidationFailed
from cleanroom.numbers import BIGINT_MAX, whole_number
from cleanroom.permissions import IsCompliance

MAX_PAGE_SIZE = 500


MAX_PAGE = 10**12  # page x page size stays far inside PostgreSQL's bigint OFFSET


def _positive_int(
    params: Any, name: str, default: int | None = None, maximum: int = BIGINT_MAX
) -> int | None:
    raw = params.get(name)
    if raw in (None, ""):
        return default
    value = whole_number(str(raw), maximum=maximum) or 0  # ASCII digits, in range
    if value < 1:
        raise ValidationFailed(
            f"{name} must be a positive whole number (at most {maximum}), not {str(raw)[:40]!r}.",
            errors=[{"field": name, "message": "not a positive integer in range"}],
        )
    return value


FILTER_PARAMETERS = [
    OpenApiParameter(
        "action", str, description="exact action, or a namespace ending in '.' or '*'"
    ),
    OpenApiParameter("actor", str, description="system, a role, role:id, or a user id"),
    OpenApiParameter("dataset", str),
    OpenApiParameter("subject", str, description="e.g. query:12"),
    OpenApiParameter("since", str, description="date or ISO date-time (inclusive)"),
    OpenApiParameter("until", str, description="date (inclusive) or ISO date-time (exclusive)"),
    OpenApiParameter(
        "refused",
        bool,
        description="only refusals: wrong passwords, refused queries and uploads, access "
        "refused, lockouts (*.refused, *.locked, cleanroom.refusals.suppressed)",
    ),
]


class AuditEventOutput(serializers.Serializer):
    seq = serializers.IntegerField()
    at = serializers.CharField()
    actor = serializers.CharField()
    actor_role = serializers.CharField()
    actor_id = serializers.CharField()
    action = serializers.CharField()
    subject = serializers.CharField()
    dataset = serializers.CharField()
    payload = serializers.JSONField()
    prev_hash = serializers.CharField()
    hash = serializers.CharField()


class EventListApi(APIView):
    permission_classes = [IsCompliance]

    class OutputSerializer(serializers.Serializer):
        count = serializers.IntegerField()
        page = serializers.IntegerField()
        page_size = serializers.IntegerField()
        next = serializers.CharField(allow_null=True)
        previous = serializers.CharField(allow_null=True)
        results = AuditEventOutput(many=True)

        class Meta:
            ref_name = "AuditEventPage"

    @extend_schema(
        parameters=[
            *FILTER_PARAMETERS,
            OpenApiParameter("page", int),
            OpenApiParameter("page_size", int, description=f"at most {MAX_PAGE_SIZE}"),
        ],
        responses=OutputSerializer,
    )
    def get(self, request: Request) -> Response:
        filters = EventFilter.from_params(request.query_params)
        page = _positive_int(request.query_params, "page", 1, maximum=MAX_PAGE) or 1
        size = min(_positive_int(request.query_params, "page_size", 50) or 50, MAX_PAGE_SIZE)
        events = event_list(filters=filters)
        count = events.count()
        rows = [event_row(e) for e in events[(page - 1) * size : page * size]]

        def link(number: int) -> str:
            query = request.query_params.copy()
            query["page"] = str(number)
            query["page_size"] = str(size)
            return request.build_absolute_uri(f"{request.path}?{query.urlencode()}")

        return Response(
            self.OutputSerializer(
                {
                    "count": count,
                    "page": page,
                    "page_size": size,
                    "next": link(page + 1) if page * size < count else None,
                    "previous": link(page - 1) if page > 1 else None,
                    "results": rows,
                }
            ).data
        )


class VerifyApi(APIView):
    permission_classes = [IsCompliance]

    class OutputSerializer(serializers.Serializer):
        ok = serializers.BooleanField()
        entries = serializers.IntegerField()
        head = serializers.CharField(allow_null=True)
        first_bad_entry = serializers.IntegerField(allow_null=True)
        reason = serializers.CharField()
        tree_root = serializers.CharField(allow_null=True)
        checkpoints_checked = serializers.IntegerField()
        latest_checkpoint = serializers.JSONField(allow_null=True)
        unsigned_tail = serializers.IntegerField()
        problems = serializers.ListField(child=serializers.CharField())
        checkpoint_every = serializers.IntegerField(
            allow_null=True,
            help_text="checkpoint interval: a longer unsigned tail makes ok false",
        )

        class Meta:
            ref_name = "AuditVerification"

    @extend_schema(responses=OutputSerializer)
    def get(self, request: Request) -> Response:
        report = log_verify().as_dict()
        latest = checkpoint_latest()
        report["latest_checkpoint"] = checkpoint_data(latest) if latest else None
        return Response(self.OutputSerializer(report).data)


class ExportApi(APIView):
    permission_classes = [IsCompliance]

    @extend_schema(responses={(200, "application/jsonl"): str})
    def get(self, request: Request) -> StreamingHttpResponse:
        response = StreamingHttpResponse(export_lines(), content_type="application/jsonl")
        response["Content-Disposition"] = 'attachment; filename="audit-export.jsonl"'
        return response


class CheckpointOutput(serializers.Serializer):
    tree_size = serializers.IntegerField()
    root = serializers.CharField(help_text="Merkle root (hex)")  # type: ignore[assignment]
    chain_head = serializers.CharField(help_text="chain hash of the last entry (hex)")
    timestamp = serializers.CharField()
    signature = serializers.CharField(help_text="Ed25519, base64")
    key_id = serializers.CharField()
    signed_note = serializers.CharField(help_text="the signed text")

    class Meta:
        ref_name = "AuditCheckpoint"


class InclusionProofOutput(serializers.Serializer):
    seq = serializers.IntegerField()
    leaf_index = serializers.IntegerField()
    tree_size = serializers.IntegerField()
    leaf_hash = serializers.CharField()
    entry = serializers.CharField(help_text="the entry's canonical JSON, as hashed")
    proof = serializers.ListField(child=serializers.CharField())
    root = serializers.CharField()  # type: ignore[assignment]
    checkpoint = CheckpointOutput()

    class Meta:
        ref_name = "AuditInclusionProof"


class ConsistencyProofOutput(serializers.Serializer):
    first = serializers.IntegerField()
    second = serializers.IntegerField()
    first_root = serializers.CharField()
    second_root = serializers.CharField()
    proof = serializers.ListField(child=serializers.CharField())
    first_checkpoint = CheckpointOutput()
    second_checkpoint = CheckpointOutput()

    class Meta:
        ref_name = "AuditConsistencyProof"


class CheckpointListApi(APIView):
    permission_classes = [IsCompliance]

    @extend_schema(responses={200: CheckpointOutput(many=True)})
    def get(self, request: Request) -> Response:
        checkpoints = AuditCheckpoint.objects.order_by("-tree_size")[:100]
        return Response(CheckpointOutput([checkpoint_data(c) for c in checkpoints], many=True).data)

    @extend_schema(request=None, responses={201: CheckpointOutput, 200: CheckpointOutput})
    def post(self, request: Request) -> Response:
        """Sign a checkpoint now (200 with the latest one when nothing was appended since)."""
        before = checkpoint_latest()
        checkpoint = checkpoint_create()
        if checkpoint is None:
            raise ValidationFailed("The audit log is empty: there is nothing to sign.")
        created = before is None or checkpoint.tree_size != before.tree_size
        return Response(
            CheckpointOutput(checkpoint_data(checkpoint)).data, status=201 if created else 200
        )


class InclusionProofApi(APIView):
    permission_classes = [IsCompliance]

    @extend_schema(
        responses={200: InclusionProofOutput},
        parameters=[
            OpenApiParameter("seq", int, required=True),
            OpenApiParameter("tree_size", int, description="a checkpoint's size (default: latest)"),
        ],
    )
    def get(self, request: Request) -> Response:
        seq = _positive_int(request.query_params, "seq")
        if seq is None:
            raise ValidationFailed(
                "seq is required.", errors=[{"field": "seq", "message": "required"}]
            )
        tree_size = _positive_int(request.query_params, "tree_size")
        return Response(
            InclusionProofOutput(inclusion_proof_get(seq=seq, tree_size=tree_size)).data
        )


class ConsistencyProofApi(APIView):
    permission_classes = [IsCompliance]

    @extend_schema(
        responses={200: ConsistencyProofOutput},
        parameters=[
            OpenApiParameter(
                "first", int, required=True, description="the older checkpoint's size"
            ),
            OpenApiParameter(
                "second", int, description="the newer checkpoint's size (default: latest)"
            ),
        ],
    )
    def get(self, request: Request) -> Response:
        first = _positive_int(request.query_params, "first")
        if first is None:
            raise ValidationFailed(
                "first is required.", errors=[{"field": "first", "message": "required"}]
            )
        second = _positive_int(request.query_params, "second")
        return Response(
            ConsistencyProofOutput(consistency_proof_get(first=first, second=second)).data
        )


class PublicKeyApi(APIView):
    """The Ed25519 public key that signs checkpoints: public, so anyone can verify."""

    authentication_classes: list[type] = []
    permission_classes = [AllowAny]

    class OutputSerializer(serializers.Serializer):
        algorithm = serializers.CharField()
        key_id = serializers.CharField()
        public_key = serializers.CharField()

        class Meta:
            ref_name = "AuditPublicKey"

    @extend_schema(responses=OutputSerializer)
    def get(self, request: Request) -> Response:
        return Response(
            {
                "algorithm": "Ed25519",
                "key_id": keys.current_key_id(),
                "public_key": keys.public_key_pem(),
            }
        )
