"""REST endpoints of identity: presentation requests (OpenID4VP shape) and trusted issuers."""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpResponse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from cleanroom.errors import DomainError
from cleanroom.permissions import IsCompliance
from cleanroom.throttling import PRESENTATION_REQUESTS_PER_CLIENT, throttle_request
from identity import selectors, services


class RequestObjectSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    nonce = serializers.CharField()
    domain = serializers.CharField()
    dcql_query = serializers.JSONField()
    request_uri = serializers.URLField()
    response_uri = serializers.URLField()
    expires_at = serializers.CharField()
    client_id = serializers.CharField()
    response_type = serializers.CharField()
    response_mode = serializers.CharField()
    state = serializers.CharField()
    client_metadata = serializers.JSONField()
    status = serializers.CharField()
    openid4vp_url = serializers.CharField()


class PresentationRequestCreateApi(APIView):
    """Start a wallet sign-in: anyone may ask for a presentation request."""

    authentication_classes: list[type] = []
    permission_classes = [AllowAny]

    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "PresentationRequestCreateInput"

        format = serializers.JSONField(
            required=False,
            help_text='"dc+sd-jwt", "ldp_vp" or "jwt_vp" (or a list); default: every format '
            "onboarding allows.",
        )
        response_mode = serializers.ChoiceField(
            choices=["direct_post", "direct_post.jwt"], required=False
        )

    @extend_schema(request=InputSerializer, responses={201: RequestObjectSerializer})
    def post(self, request: Request) -> Response:
        # Anonymous and each one stores a nonce: limited per client address (429).
        throttle_request(request, PRESENTATION_REQUESTS_PER_CLIENT)
        data = self.InputSerializer(data=request.data or {})
        data.is_valid(raise_exception=True)
        chosen = data.validated_data.get("format")
        formats = None if chosen is None else ([chosen] if isinstance(chosen, str) else chosen)
        presentation_request = services.presentation_request_create(
            formats=formats, response_mode=data.validated_data.get("response_mode")
        )
        return Response(
            selectors.request_object(presentation_request), status=status.HTTP_201_CREATED
        )


REQUEST_OBJECT_TYPE = "application/oauth-authz-req+jwt"


class RequestObjectRenderer(BaseRenderer):
    """Lets a wallet ask for the JAR media type; errors still go out as JSON text."""

    media_type = REQUEST_OBJECT_TYPE
    format = "jwt"
    charset = "utf-8"

    def render(
        self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None
    ) -> bytes:
        return (data if isinstance(data, str) else json.dumps(data)).encode()


class PresentationRequestDetailApi(APIView):
    """The request object a wallet reads at request_uri: the signed JAR (OpenID4VP 1.0), or
    the same fields as JSON for a client that asks only for application/json."""

    authentication_classes: list[type] = []
    permission_classes = [AllowAny]
    renderer_classes = [JSONRenderer, RequestObjectRenderer]

    @extend_schema(
        responses={
            (200, REQUEST_OBJECT_TYPE): OpenApiResponse(
                str, description="the signed request object"
            ),
            (200, "application/json"): RequestObjectSerializer,
        }
    )
    def get(self, request: Request, request_id: str) -> HttpResponse:
        presentation_request = services.presentation_request_fetch(request_id=request_id)
        accept = request.META.get("HTTP_ACCEPT", "")
        if "application/json" in accept and REQUEST_OBJECT_TYPE not in accept:
            return Response(selectors.request_object(presentation_request))
        return HttpResponse(
            selectors.request_object_jwt(presentation_request), content_type=REQUEST_OBJECT_TYPE
        )


class PresentationResponseApi(APIView):
    """response_uri (direct_post): the wallet posts `vp_token`; we verify and admit."""

    authentication_classes: list[type] = []
    permission_classes = [AllowAny]

    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "PresentationResponseInput"

        vp_token = serializers.JSONField(
            help_text="The presentation: a JSON object or a JWT string."
        )

    class OutputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "PresentationResponseOutput"

        verified = serializers.BooleanField()
        did = serializers.CharField()
        token = serializers.CharField()
        credentials = serializers.ListField(child=serializers.CharField())

    class RefusedSerializer(serializers.Serializer):
        class Meta:
            ref_name = "PresentationResponseRefused"

        verified = serializers.BooleanField()
        type = serializers.CharField()
        title = serializers.CharField()
        detail = serializers.CharField()
        errors = serializers.ListField(child=serializers.JSONField())  # type: ignore[assignment]

    @extend_schema(
        request=InputSerializer,
        responses={
            200: OutputSerializer,
            400: OpenApiResponse(RefusedSerializer),
            404: OpenApiResponse(RefusedSerializer),
            413: OpenApiResponse(RefusedSerializer),
        },
    )
    def post(self, request: Request, request_id: str) -> Response:
        # The raw body, never more than the cap (+1 byte so the service sees it is too big):
        # a huge body is refused without being read. The service parses JSON or form.
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            declared = 0
        limit = services.MAX_RESPONSE_BYTES
        body = b"" if declared > limit else request._request.read(limit + 1)
        try:
            admission = services.presentation_submit(
                request_id=request_id,
                body=body,
                content_type=request.content_type or "application/json",
                content_length=declared,
            )
        except DomainError as exc:
            return Response(_refusal(exc), status=exc.status_code)
        return Response(
            {
                "verified": True,
                "did": admission.did,
                "token": admission.token,
                "credentials": admission.credential_types,
            }
        )


def _refusal(exc: DomainError) -> dict[str, Any]:
    return {
        "verified": False,
        "type": exc.type,
        "title": exc.title,
        "detail": exc.detail,
        "errors": exc.errors,
    }


class TrustedIssuerOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    did = serializers.CharField(
        help_text="A DID, an issuer URL, or x509_hash:<...> of a certificate."
    )
    name = serializers.CharField()
    credential_types = serializers.ListField(child=serializers.CharField())
    formats = serializers.ListField(child=serializers.CharField())
    vcts = serializers.ListField(child=serializers.CharField())
    certificate = serializers.CharField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class TrustedIssuerListApi(APIView):
    permission_classes = [IsCompliance]

    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "TrustedIssuerCreateInput"

        did = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")
        name = serializers.CharField(max_length=200)
        credential_types = serializers.ListField(
            child=serializers.CharField(max_length=100), required=False, default=list
        )
        formats = serializers.ListField(
            child=serializers.CharField(max_length=20),
            required=False,
            allow_null=True,
            default=None,
        )
        vcts = serializers.ListField(
            child=serializers.CharField(max_length=200), required=False, default=list
        )
        certificate = serializers.CharField(
            max_length=20000, required=False, allow_blank=True, default=""
        )

    @extend_schema(responses={200: TrustedIssuerOutputSerializer(many=True)})
    def get(self, request: Request) -> Response:
        issuers = selectors.trusted_issuer_list()
        return Response(TrustedIssuerOutputSerializer(issuers, many=True).data)

    @extend_schema(request=InputSerializer, responses={201: TrustedIssuerOutputSerializer})
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        issuer = services.trusted_issuer_create(actor=request.user, **data.validated_data)  # type: ignore[arg-type]
        return Response(TrustedIssuerOutputSerializer(issuer).data, status=status.HTTP_201_CREATED)


class TrustedIssuerDetailApi(APIView):
    permission_classes = [IsCompliance]

    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "TrustedIssuerUpdateInput"

        name = serializers.CharField(max_length=200)
        credential_types = serializers.ListField(
            child=serializers.CharField(max_length=100), required=False, default=list
        )
        formats = serializers.ListField(
            child=serializers.CharField(max_length=20),
            required=False,
            allow_null=True,
            default=None,
        )
        vcts = serializers.ListField(
            child=serializers.CharField(max_length=200),
            required=False,
            allow_null=True,
            default=None,
        )

    @extend_schema(responses={200: TrustedIssuerOutputSerializer})
    def get(self, request: Request, issuer_id: int) -> Response:
        issuer = selectors.trusted_issuer_get(issuer_id=issuer_id)
        return Response(TrustedIssuerOutputSerializer(issuer).data)

    @extend_schema(request=InputSerializer, responses={200: TrustedIssuerOutputSerializer})
    def put(self, request: Request, issuer_id: int) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        issuer = services.trusted_issuer_update(
            issuer_id=issuer_id,
            actor=request.user,  # type: ignore[arg-type]
            **data.validated_data,  # type: ignore[arg-type]
        )
        return Response(TrustedIssuerOutputSerializer(issuer).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, issuer_id: int) -> Response:
        services.trusted_issuer_remove(issuer_id=issuer_id, actor=request.user)  # type: ignore[arg-type]
        return Response(status=status.HTTP_204_NO_CONTENT)
