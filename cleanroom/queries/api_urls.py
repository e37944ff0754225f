"""REST endpoints of queries under /api/v1/."""

from django.urls import URLPattern, URLResolver, path

from cleanroom.queries import api

urlpatterns: list[URLPattern | URLResolver] = [
    path("queries/", api.QueryListApi.as_view(), name="query-list"),
    path("queries/preview/", api.QueryPreviewApi.as_view(), name="query-preview"),
    path("queries/<int:pk>/", api.QueryDetailApi.as_view(), name="query-detail"),
    path("queries/<int:pk>/approve/", api.QueryApproveApi.as_view(), name="query-approve"),
    path("queries/<int:pk>/reject/", api.QueryRejectApi.as_view(), name="query-reject"),
    path("queries/<int:pk>/result/", api.QueryResultDownloadApi.as_view(), name="query-result"),
    path(
        "queries/budget/<slug:slug>/", api.DatasetBudgetApi.as_view(), name="query-dataset-budget"
    ),
]
