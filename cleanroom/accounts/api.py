"""Token endpoint: `POST /api/v1/auth/token/` with username and password."""

from __future__ import annotations

from django.core.validators import RegexValidator
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from cleanroom.accounts.services import InvalidCredentials, sign_in, token_for
from cleanroom.throttling import client_address

__all__ = ["InvalidCredentials", "TokenObtainApi"]

NOT_BLANK = RegexValidator(r"\S", "This field may not be blank.")


class TokenObtainApi(APIView):
    authentication_classes: list[type] = []
    permission_classes = [AllowAny]

    class InputSerializer(serializers.Serializer):
        # Blank names are refused; the schema says so too (pattern: a non-space character).
        username = serializers.CharField(validators=[NOT_BLANK])
        password = serializers.CharField(trim_whitespace=False)

    class OutputSerializer(serializers.Serializer):
        token = serializers.CharField()
        role = serializers.CharField()

    @extend_schema(request=InputSerializer, responses=OutputSerializer)
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = sign_in(
            username=data.validated_data["username"],
            password=data.validated_data["password"],
            client=client_address(request),
            channel="api",
        )
        return Response(
            self.OutputSerializer({"token": token_for(user=user), "role": user.role}).data
        )
