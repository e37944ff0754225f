"""REST endpoints of money: billing and top-ups (business), earnings and payout destination
(contributor), distributions, settlements, payouts and reconciliation (compliance), and the
providers' webhooks. Views parse, call one service or selector, and render."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from cleanroom.accounts.models import Contributor, Organization
from cleanroom.errors import NotFound, ValidationFailed
from cleanroom.idempotency import idempotent
from cleanroom.numbers import whole_number
from cleanroom.permissions import IsBusiness, IsCompliance, IsContributor
from payouts import selectors, services
from payouts.disbursement import webhook_apply
from payouts.models import Payout, Settlement
from payouts.money import micro_format, micro_parse
from payouts.providers import provider_get
from payouts.providers.base import SignatureInvalid
from payouts.reconcile import ledger_reconcile
from payouts.settlement import settlement_proof


def _organization(request: Request) -> Organization:
    organization = getattr(request.user, "organization", None)
    assert organization is not None  # IsBusiness: a business user always has one
    return organization


def _contributor(request: Request) -> Contributor:
    return request.user.contributor  # type: ignore[union-attr]


MAX_OFFSET = 10**15  # far past any table, and OFFSET + LIMIT still fits PostgreSQL's bigint


def _paging(request: Request) -> tuple[int, int]:
    limit = whole_number(str(request.query_params.get("limit", 100)))
    offset = whole_number(str(request.query_params.get("offset", 0)), maximum=MAX_OFFSET)
    if limit is None or offset is None:
        raise ValidationFailed(
            f"limit and offset are whole numbers (offset at most {MAX_OFFSET}).",
            errors=[{"field": "limit/offset", "message": "Not a whole number in range."}],
        )
    return min(max(limit, 1), 1000), offset


class DestinationOutput(serializers.Serializer):
    provider = serializers.CharField()
    holder_name = serializers.CharField()
    iban = serializers.CharField(help_text="masked: enough to recognise it")
    updated_at = serializers.CharField(help_text="ISO 8601 date-time")


class PageOutput(serializers.Serializer):
    limit = serializers.IntegerField()
    offset = serializers.IntegerField()


class PayoutPageOutput(PageOutput):
    payouts = serializers.ListField(child=serializers.DictField())


class DistributionPageOutput(PageOutput):
    distributions = serializers.ListField(child=serializers.DictField())


class SettlementOutput(serializers.Serializer):
    id = serializers.IntegerField()
    currency = serializers.CharField()
    status = serializers.CharField()
    distributions = serializers.IntegerField()
    contributors = serializers.IntegerField()
    total = serializers.CharField(help_text="decimal string")
    batches = serializers.IntegerField()
    merkle_root = serializers.CharField(allow_null=True, allow_blank=True)
    created_at = serializers.CharField(help_text="ISO 8601 date-time")
    completed_at = serializers.CharField(allow_null=True)
    proof = serializers.JSONField(
        required=False, help_text="with ?contributor=: the Merkle inclusion proof of its line"
    )


class SettlementPageOutput(PageOutput):
    settlements = SettlementOutput(many=True)


class QueuedOutput(serializers.Serializer):
    queued = serializers.BooleanField()


class ReconciliationOutput(serializers.Serializer):
    ok = serializers.BooleanField()
    problems = serializers.ListField(child=serializers.CharField())
    balances = serializers.ListField(child=serializers.DictField())
    figures = serializers.DictField()


class WebhookOutput(serializers.Serializer):
    outcome = serializers.CharField(help_text="what the event did ('duplicate' for a repeat)")


class ChargeOutput(serializers.Serializer):
    query = serializers.IntegerField()
    amount = serializers.CharField(help_text="decimal string, e.g. '6.000000'")
    currency = serializers.CharField()
    dataset = serializers.CharField()
    epsilon = serializers.CharField()
    at = serializers.DateTimeField()


class BillingOutput(serializers.Serializer):
    balance = serializers.CharField()
    currency = serializers.CharField()
    balances = serializers.JSONField()
    charges = ChargeOutput(many=True)
    top_ups = serializers.JSONField()


class BillingApi(APIView):
    permission_classes = [IsBusiness]

    @extend_schema(responses=BillingOutput)
    def get(self, request: Request) -> Response:
        summary = selectors.billing_summary(organization=_organization(request))
        return Response(BillingOutput(summary).data)


class TopUpApi(APIView):
    permission_classes = [IsBusiness]

    class TopUpInputSerializer(serializers.Serializer):
        amount = serializers.CharField(max_length=40, help_text="decimal string, e.g. '100.00'")
        currency = serializers.CharField(max_length=3, required=False)
        reference = serializers.CharField(
            max_length=80,
            required=False,
            help_text=(
                "the transfer's reference, unique in the organization: a top-up with a "
                "reference already recorded for the same amount is that top-up; for another "
                "amount it is refused (409)"
            ),
        )

    class TopUpOutputSerializer(serializers.Serializer):
        entry = serializers.IntegerField()
        amount = serializers.CharField()
        currency = serializers.CharField()
        balance = serializers.CharField()

    @extend_schema(request=TopUpInputSerializer, responses={201: TopUpOutputSerializer})
    @idempotent
    def post(self, request: Request) -> Response:
        if isinstance(request.data, dict) and isinstance(request.data.get("amount"), float):
            micro_parse(request.data["amount"])  # refuses floats with a clear message
        data = self.TopUpInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        amount = micro_parse(data.validated_data["amount"])
        currency = str(data.validated_data.get("currency") or services.default_currency()).upper()
        if not currency.isalpha() or len(currency) != 3:
            raise ValidationFailed(
                "currency is a three-letter code such as 'EUR'.",
                errors=[{"field": "currency", "message": "Three letters."}],
            )
        # `reference` names one transfer for the whole organization; a retry with the same
        # Idempotency-Key is one user's and is answered by @idempotent before this line.
        organization = _organization(request)
        entry = services.topup_record(
            organization=organization,
            amount=amount,
            currency=currency,
            actor=request.user,
            reference=data.validated_data.get("reference") or "",
        )
        account = services.business_account(organization=organization, currency=currency)
        return Response(
            self.TopUpOutputSerializer(
                {
                    "entry": entry.pk,
                    "amount": micro_format(amount),
                    "currency": currency,
                    "balance": micro_format(account.balance),
                }
            ).data,
            status=status.HTTP_201_CREATED,
        )


class ShareOutput(serializers.Serializer):
    query = serializers.IntegerField()
    dataset = serializers.CharField()
    purpose = serializers.CharField()
    organization = serializers.CharField()
    epsilon = serializers.CharField()
    amount = serializers.CharField()
    currency = serializers.CharField()
    at = serializers.DateTimeField()
    settlement = serializers.IntegerField(allow_null=True)


class EarningsOutput(serializers.Serializer):
    balance = serializers.CharField(help_text="earned and not yet paid out")
    currency = serializers.CharField()
    earned = serializers.CharField()
    paid_out = serializers.CharField()
    in_transit = serializers.CharField()
    shares = ShareOutput(many=True)
    payouts = serializers.JSONField()
    settlements = serializers.JSONField(help_text="Merkle inclusion proofs of your lines")
    payout_destination = serializers.JSONField(allow_null=True)


class MyEarningsApi(APIView):
    permission_classes = [IsContributor]

    @extend_schema(responses=EarningsOutput)
    def get(self, request: Request) -> Response:
        detail = selectors.contributor_earnings_detail(contributor=_contributor(request))
        return Response(EarningsOutput(detail).data)


class PayoutDestinationApi(APIView):
    permission_classes = [IsContributor]

    class DestinationInputSerializer(serializers.Serializer):
        holder_name = serializers.CharField(max_length=140)
        iban = serializers.CharField(max_length=50)
        provider = serializers.CharField(max_length=40, required=False, default="fake_bank")

    @extend_schema(responses=DestinationOutput)
    def get(self, request: Request) -> Response:
        view = selectors.destination_view(contributor=_contributor(request))
        if view is None:
            raise NotFound("You have not set a payout destination yet.")
        return Response(DestinationOutput(view).data)

    @extend_schema(request=DestinationInputSerializer, responses=DestinationOutput)
    def put(self, request: Request) -> Response:
        data = self.DestinationInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        contributor = _contributor(request)
        services.payout_destination_set(contributor=contributor, **data.validated_data)
        return Response(DestinationOutput(selectors.destination_view(contributor=contributor)).data)

    post = put


class PayoutsApi(APIView):
    permission_classes = [IsCompliance]

    @extend_schema(responses=PayoutPageOutput)
    def get(self, request: Request) -> Response:
        limit, offset = _paging(request)
        status_filter = request.query_params.get("status", "")
        if status_filter and status_filter not in Payout.Status.values:
            raise ValidationFailed(
                f"status is one of {', '.join(Payout.Status.values)}.",
                errors=[{"field": "status", "message": "Unknown status."}],
            )
        settlement = request.query_params.get("settlement")
        settlement_id = whole_number(settlement) if settlement else None
        if settlement and settlement_id is None:
            raise ValidationFailed("settlement is a settlement id.")
        rows = selectors.payouts_list(
            status=status_filter,
            settlement=settlement_id,
            limit=limit,
            offset=offset,
        )
        return Response(PayoutPageOutput({"payouts": rows, "limit": limit, "offset": offset}).data)


class DistributionsApi(APIView):
    permission_classes = [IsCompliance]

    @extend_schema(responses=DistributionPageOutput)
    def get(self, request: Request) -> Response:
        limit, offset = _paging(request)
        rows = selectors.distributions_list(limit=limit, offset=offset)
        return Response(
            DistributionPageOutput({"distributions": rows, "limit": limit, "offset": offset}).data
        )


class SettlementsApi(APIView):
    permission_classes = [IsCompliance]

    @extend_schema(responses=SettlementPageOutput)
    def get(self, request: Request) -> Response:
        limit, offset = _paging(request)
        rows = selectors.settlements_list(limit=limit, offset=offset)
        return Response(
            SettlementPageOutput({"settlements": rows, "limit": limit, "offset": offset}).data
        )

    @extend_schema(request=None, responses={202: QueuedOutput})
    @idempotent
    def post(self, request: Request) -> Response:
        """Settle now (on demand): queued for a worker, like the periodic run."""
        from payouts.tasks import settlement_run

        user_pk = request.user.pk
        transaction.on_commit(lambda: settlement_run.delay(requested_by=user_pk))
        return Response(QueuedOutput({"queued": True}).data, status=status.HTTP_202_ACCEPTED)


class SettlementDetailApi(APIView):
    permission_classes = [IsCompliance]

    @extend_schema(operation_id="payouts_settlement_detail", responses=SettlementOutput)
    def get(self, request: Request, pk: int) -> Response:
        settlement = Settlement.objects.filter(pk=pk).first()
        if settlement is None:
            raise NotFound(f"No settlement {pk}.")
        out: dict[str, Any] = selectors.settlement_row(settlement)
        contributor = request.query_params.get("contributor")
        if contributor:
            contributor_pk = whole_number(contributor)
            if contributor_pk is None:
                raise ValidationFailed("contributor is a contributor id.")
            out["proof"] = settlement_proof(settlement=settlement, contributor_pk=contributor_pk)
        return Response(SettlementOutput(out).data)


class ReconciliationApi(APIView):
    permission_classes = [IsCompliance]

    @extend_schema(responses=ReconciliationOutput)
    def get(self, request: Request) -> Response:
        report = ledger_reconcile()
        return Response(
            ReconciliationOutput(
                {
                    "ok": report.ok,
                    "problems": report.problems,
                    "balances": report.balances,
                    "figures": report.figures,
                }
            ).data
        )


class WebhookApi(APIView):
    """A provider posts its events here, signed (header X-Signature)."""

    permission_classes = [AllowAny]
    authentication_classes: list[Any] = []

    @extend_schema(request=OpenApiTypes.OBJECT, responses=WebhookOutput)
    def post(self, request: Request, provider: str) -> Response:
        implementation = provider_get(provider)
        try:
            event = implementation.webhook_parse(
                body=request.body, signature=request.headers.get("X-Signature", "")
            )
        except SignatureInvalid as error:
            raise ValidationFailed(f"Webhook refused: {error}.") from None
        return Response(
            WebhookOutput({"outcome": webhook_apply(provider=provider, event=event)}).data
        )
