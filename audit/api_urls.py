"""REST endpoints of audit under /api/v1/."""

from django.urls import URLPattern, URLResolver, path

from audit import api

urlpatterns: list[URLPattern | URLResolver] = [
    path("audit/events/", api.EventListApi.as_view(), name="audit-events"),
    path("audit/verify/", api.VerifyApi.as_view(), name="audit-verify"),
    path("audit/export/", api.ExportApi.as_view(), name="audit-export"),
    path("audit/checkpoints/", api.CheckpointListApi.as_view(), name="audit-checkpoints"),
    path("audit/proofs/inclusion/", api.InclusionProofApi.as_view(), name="audit-inclusion-proof"),
    path(
        "audit/proofs/consistency/",
        api.ConsistencyProofApi.as_view(),
        name="audit-consistency-proof",
    ),
    path("audit/public-key/", api.PublicKeyApi.as_view(), name="audit-public-key"),
]
