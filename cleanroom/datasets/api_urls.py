"""REST endpoints of datasets under /api/v1/."""

from django.urls import URLPattern, URLResolver, path

from cleanroom.datasets import api

urlpatterns: list[URLPattern | URLResolver] = [
    path("datasets/", api.DatasetListApi.as_view(), name="dataset-list"),
    path("datasets/<slug:slug>/", api.DatasetDetailApi.as_view(), name="dataset-detail"),
    path("datasets/<slug:slug>/consent/", api.ConsentApi.as_view(), name="dataset-consent"),
    path(
        "datasets/<slug:slug>/contributions/",
        api.ContributionApi.as_view(),
        name="dataset-contributions",
    ),
    path("me/", api.MeApi.as_view(), name="me"),
    path("me/export/", api.MeExportApi.as_view(), name="me-export"),
    path("me/data/", api.MeDataApi.as_view(), name="me-data"),
]
