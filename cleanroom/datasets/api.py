"""REST endpoints of datasets, consent, contributions and the contributor's rights."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.files.uploadhandler import MemoryFileUploadHandler
from django.http import StreamingHttpResponse
from drf_spectacular.utils import OpenApiParameter, PolymorphicProxySerializer, extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from cleanroom.accounts.models import Contributor
from cleanroom.datasets import selectors, services
from cleanroom.datasets.models import Dataset
from cleanroom.errors import PayloadTooLarge, ValidationFailed
from cleanroom.idempotency import idempotent
from cleanroom.parsers import JSONParser, WholeNumberField
from cleanroom.permissions import IsContributor, ReadAnyWriteCompliance
from cleanroom.refusals import UPLOAD_REFUSED
from cleanroom.streaming import json_chunks


class PlaintextStaysInMemory(MemoryFileUploadHandler):
    """Keep an uploaded CSV in memory (the size was checked first) instead of a temp file.

    Django writes uploads above 2.5 MB to a temporary file; contributed values must never
    sit on disk in plaintext, so the bytes stay in memory once and are parsed line by line.
    """

    def handle_raw_input(self, *args: Any, **kwargs: Any) -> None:
        super().handle_raw_input(*args, **kwargs)
        self.activated = True


def _contributor(request: Request) -> Contributor:
    return request.user.contributor  # type: ignore[union-attr]


def dataset_output(dataset: Dataset, *, viewer: Any) -> dict[str, Any]:
    out = {
        "slug": dataset.slug,
        "name": dataset.name,
        "purpose": dataset.purpose,
        "schema": dataset.schema,
        "contributors": selectors.pool_size(dataset=dataset),
        "budget": selectors.budget_of(dataset),
        "policy": dataset.policy,
        "price": dataset.price,
        "retention_days": dataset.retention_days,
        "terms_version": dataset.terms_version,
        "created_at": dataset.created_at,
        "updated_at": dataset.updated_at,
    }
    if getattr(viewer, "role", None) == "contributor":
        out["consent"] = selectors.consent_status(contributor=viewer.contributor, dataset=dataset)
    return out


class DatasetOutput(serializers.Serializer):
    slug = serializers.CharField()
    name = serializers.CharField()
    purpose = serializers.CharField()
    schema = serializers.JSONField()
    contributors = serializers.IntegerField()
    budget = serializers.JSONField()
    policy = serializers.JSONField()
    price = serializers.JSONField()
    retention_days = serializers.IntegerField()
    terms_version = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    consent = serializers.ChoiceField(
        choices=["current", "outdated", "withdrawn", "none"],
        required=False,
        help_text="for contributors: their consent to this dataset",
    )


class DatasetListApi(APIView):
    permission_classes = [ReadAnyWriteCompliance]

    class InputSerializer(serializers.Serializer):
        slug = serializers.CharField(max_length=100)
        name = serializers.CharField(max_length=200)
        purpose = serializers.CharField(max_length=5000)
        schema = serializers.JSONField()
        policy = serializers.JSONField()
        price = serializers.JSONField()
        retention_days = WholeNumberField(required=False, default=365)

    @extend_schema(responses=DatasetOutput(many=True))
    def get(self, request: Request) -> Response:
        return Response(
            DatasetOutput(
                [
                    dataset_output(d, viewer=request.user)
                    for d in selectors.dataset_list_visible(user=request.user)
                ],
                many=True,
            ).data
        )

    @extend_schema(request=InputSerializer, responses={201: DatasetOutput})
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        dataset = services.dataset_create(actor=request.user, **data.validated_data)  # type: ignore[arg-type]
        return Response(
            DatasetOutput(dataset_output(dataset, viewer=request.user)).data,
            status=status.HTTP_201_CREATED,
        )


# One entry of a policy diff; "from" and "to" are Python keywords, hence type().
DatasetChangeOutput = type(
    "DatasetChangeOutput",
    (serializers.Serializer,),
    {
        "field": serializers.CharField(),
        "from": serializers.JSONField(),
        "to": serializers.JSONField(),
        "needs_reconsent": serializers.BooleanField(),
        "why": serializers.CharField(),
    },
)


class DatasetPlanOutput(serializers.Serializer):
    """`PATCH ...?dry_run=1`: what would change, and who would leave the pool."""

    changes = DatasetChangeOutput(many=True)
    needs_reconsent = serializers.BooleanField()
    contributors_leaving = serializers.IntegerField()
    terms_version = serializers.IntegerField()


class DatasetDetailApi(APIView):
    permission_classes = [ReadAnyWriteCompliance]

    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=200, required=False)
        purpose = serializers.CharField(max_length=5000, required=False)
        schema = serializers.JSONField(required=False)
        policy = serializers.JSONField(required=False)
        price = serializers.JSONField(required=False)
        retention_days = WholeNumberField(required=False)

    @extend_schema(responses=DatasetOutput)
    def get(self, request: Request, slug: str) -> Response:
        dataset = selectors.dataset_get_visible(slug=slug, user=request.user)
        return Response(DatasetOutput(dataset_output(dataset, viewer=request.user)).data)

    @extend_schema(
        request=InputSerializer,
        responses={
            200: PolymorphicProxySerializer(
                component_name="DatasetUpdateOrPlan",
                serializers=[DatasetOutput, DatasetPlanOutput],
                resource_type_field_name=None,
            )
        },
        parameters=[
            OpenApiParameter(
                "dry_run",
                bool,
                description="1: answer what would change (the diff, which changes need new "
                "consent, how many contributors leave the pool until they consent again) "
                "and change nothing. The body may hold a partial policy (merged; a null "
                "key is removed).",
            )
        ],
    )
    def patch(self, request: Request, slug: str) -> Response:
        dataset = selectors.dataset_get(slug=slug)
        if not isinstance(request.data, dict):
            raise ValidationFailed("Send a JSON object of the fields to change.")
        unknown = set(request.data) - set(self.InputSerializer().fields)
        if unknown:
            raise ValidationFailed(
                f"These fields cannot be changed: {', '.join(sorted(map(str, unknown)))}."
            )
        data = self.InputSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        dry_run = request.query_params.get("dry_run", "")
        if dry_run not in ("", "0", "1", "false", "true"):
            raise ValidationFailed("dry_run must be 1 or 0.")
        if dry_run in ("1", "true"):
            plan = services.dataset_update_plan(dataset=dataset, changes=dict(data.validated_data))
            return Response(DatasetPlanOutput(plan).data)
        dataset = services.dataset_update(
            actor=request.user,  # type: ignore[arg-type]
            dataset=dataset,
            changes=dict(data.validated_data),
        )
        return Response(DatasetOutput(dataset_output(dataset, viewer=request.user)).data)


class ConsentApi(APIView):
    permission_classes = [IsContributor]

    class InputSerializer(serializers.Serializer):
        privacy_cap = serializers.JSONField(
            required=False,
            allow_null=True,
            help_text='{"epsilon": "2.0"}: the most privacy loss accepted on this dataset per '
            "365 days (omitted: the policy's default_privacy_cap).",
        )

    class OutputSerializer(serializers.Serializer):
        dataset = serializers.CharField()
        terms_version = serializers.IntegerField()
        given_at = serializers.DateTimeField()
        withdrawn_at = serializers.DateTimeField(allow_null=True)
        privacy_cap = serializers.JSONField(
            allow_null=True, help_text='{"epsilon": "2.0", "per": "year", "source": ...}'
        )

    def _out(self, consent: Any, dataset: Dataset) -> dict[str, Any]:
        return self.OutputSerializer(
            {
                "dataset": dataset.slug,
                "terms_version": consent.terms_version,
                "given_at": consent.given_at,
                "withdrawn_at": consent.withdrawn_at,
                "privacy_cap": selectors.privacy_cap_of(consent=consent, dataset=dataset),
            }
        ).data

    @extend_schema(
        request=InputSerializer, responses={201: OutputSerializer, 200: OutputSerializer}
    )
    def post(self, request: Request, slug: str) -> Response:
        dataset = selectors.dataset_get(slug=slug)
        data = self.InputSerializer(data=request.data or {})
        data.is_valid(raise_exception=True)
        consent, created = services.consent_give(
            contributor=_contributor(request),
            dataset=dataset,
            privacy_cap=data.validated_data.get("privacy_cap"),
        )
        return Response(
            self._out(consent, dataset), status=status.HTTP_201_CREATED if created else 200
        )

    @extend_schema(request=None, responses=OutputSerializer)
    def delete(self, request: Request, slug: str) -> Response:
        dataset = selectors.dataset_get(slug=slug)
        consent = services.consent_withdraw(contributor=_contributor(request), dataset=dataset)
        return Response(self._out(consent, dataset))


class ContributionApi(APIView):
    permission_classes = [IsContributor]
    refusal_action = UPLOAD_REFUSED  # a refused upload is audited (cleanroom.refusals)
    parser_classes = [JSONParser, MultiPartParser]

    class InputSerializer(serializers.Serializer):
        records = serializers.ListField(child=serializers.DictField(), required=False)
        file = serializers.FileField(required=False, help_text="CSV with a header row")

    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        dataset = serializers.CharField()
        accepted = serializers.IntegerField()

    @extend_schema(request=InputSerializer, responses={201: OutputSerializer})
    @idempotent
    def post(self, request: Request, slug: str) -> Response:
        limit = settings.CLEANROOM_MAX_UPLOAD_BYTES
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        # Refuse before reading the body: a 50 MB upload is never parsed.
        if length > limit:
            raise PayloadTooLarge(
                f"The upload is larger than the limit of {limit // (1024 * 1024)} MB; "
                "split it into several uploads."
            )
        request._request.upload_handlers = [PlaintextStaysInMemory(request._request)]
        dataset = selectors.dataset_get(slug=slug)
        contributor = _contributor(request)
        records: Any = None
        csv_file = None
        if request.content_type.startswith("multipart/"):
            upload = request.FILES.get("file")
            if upload is None:
                raise ValidationFailed('Send the CSV file in the multipart field "file".')
            if upload.size is not None and upload.size > limit:
                raise PayloadTooLarge("The file is larger than the upload limit.")
            if not upload.size:
                raise ValidationFailed(
                    "The file is empty.",
                    errors=[{"row": None, "column": None, "message": "empty file"}],
                )
            csv_file = upload.file
        else:
            if not isinstance(request.data, dict) or "records" not in request.data:
                raise ValidationFailed('Send JSON {"records": [...]} or a CSV file.')
            records = request.data["records"]
        contribution = services.contribution_upload(
            contributor=contributor, dataset=dataset, records=records, csv_file=csv_file
        )
        return Response(
            self.OutputSerializer(
                {"id": contribution.pk, "dataset": dataset.slug, "accepted": contribution.rows}
            ).data,
            status=status.HTTP_201_CREATED,
        )


class MeConsentOutput(serializers.Serializer):
    dataset = serializers.CharField()
    terms_version = serializers.IntegerField()
    current_terms_version = serializers.IntegerField()
    is_active = serializers.BooleanField()
    given_at = serializers.DateTimeField()
    withdrawn_at = serializers.DateTimeField(allow_null=True)
    privacy_cap = serializers.JSONField(allow_null=True)


class MePrivacyLossOutput(serializers.Serializer):
    dataset = serializers.CharField()
    epsilon = serializers.FloatField(help_text="all runs that included you, replace-one relation")
    delta = serializers.FloatField()
    epsilon_past_year = serializers.FloatField(help_text="what counts against the cap")
    cap = serializers.FloatField(allow_null=True, help_text="epsilon per 365 days; null: none")


class MePrivacyLossTotalOutput(serializers.Serializer):
    epsilon = serializers.FloatField()
    delta = serializers.FloatField()


class MeEarningsOutput(serializers.Serializer):
    balance = serializers.CharField()
    currency = serializers.CharField()


class MeUploadOutput(serializers.Serializer):
    id = serializers.IntegerField()
    dataset = serializers.CharField()
    rows = serializers.IntegerField()
    uploaded_at = serializers.DateTimeField()


class MeErasureOutput(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.CharField()
    requested_at = serializers.DateTimeField()
    completed_at = serializers.DateTimeField(allow_null=True)


class MeApi(APIView):
    permission_classes = [IsContributor]

    class OutputSerializer(serializers.Serializer):
        did = serializers.CharField()
        consents = MeConsentOutput(many=True)
        contributions = MeUploadOutput(many=True)
        privacy_loss = MePrivacyLossOutput(many=True)
        privacy_loss_total = MePrivacyLossTotalOutput()
        earnings = MeEarningsOutput()
        queries = serializers.ListField(child=serializers.DictField())
        erasures = MeErasureOutput(many=True)

    @extend_schema(responses=OutputSerializer)
    def get(self, request: Request) -> Response:
        return Response(selectors.contributor_overview(contributor=_contributor(request)))


class MeExportApi(APIView):
    permission_classes = [IsContributor]

    class OutputSerializer(serializers.Serializer):
        did = serializers.CharField()
        joined_at = serializers.DateTimeField()
        consents = MeConsentOutput(many=True)
        contributions = serializers.ListField(
            child=serializers.DictField(), help_text="uploads with their records decrypted"
        )
        privacy_loss = MePrivacyLossOutput(many=True)
        queries = serializers.ListField(child=serializers.DictField())
        earnings = serializers.DictField()
        erasures = MeErasureOutput(many=True)

    @extend_schema(responses=OutputSerializer)
    def get(self, request: Request) -> StreamingHttpResponse:
        return export_response(selectors.contributor_export(contributor=_contributor(request)))


def export_response(export: dict[str, Any]) -> StreamingHttpResponse:
    """The export streamed (one upload decrypted at a time): constant memory for any size."""
    response = StreamingHttpResponse(json_chunks(export), content_type="application/json")
    response["Content-Disposition"] = 'attachment; filename="my-clean-room-data.json"'
    response["Cache-Control"] = "no-store"
    return response


class MeDataApi(APIView):
    permission_classes = [IsContributor]

    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        status = serializers.CharField()
        requested_at = serializers.DateTimeField()

    @extend_schema(request=None, responses={202: OutputSerializer})
    def delete(self, request: Request) -> Response:
        erasure = services.contributor_erase_request(contributor=_contributor(request))
        return Response(
            self.OutputSerializer(
                {"id": erasure.pk, "status": erasure.status, "requested_at": erasure.requested_at}
            ).data,
            status=status.HTTP_202_ACCEPTED,
        )
