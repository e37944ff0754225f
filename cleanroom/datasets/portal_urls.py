"""Portal pages of datasets. NAV lists (roles, label, url name) for the role-aware navigation."""

from django.urls import URLPattern, URLResolver, path

from cleanroom.datasets import portal

app_name = "datasets"
urlpatterns: list[URLPattern | URLResolver] = [
    path("datasets/", portal.catalog, name="catalog"),
    path("datasets/new/", portal.new, name="new"),
    path("datasets/<slug:slug>/", portal.detail, name="detail"),
    path("datasets/<slug:slug>/policy/", portal.policy_edit, name="policy"),
    path("datasets/<slug:slug>/consent/", portal.consent, name="consent"),
    path("datasets/<slug:slug>/withdraw/", portal.withdraw, name="withdraw"),
    path("datasets/<slug:slug>/upload/", portal.upload, name="upload"),
    path("my-data/", portal.dashboard, name="dashboard"),
    path("my-data/export/", portal.export, name="export"),
    path("my-data/erase/", portal.erase, name="erase"),
]
NAV: list[tuple[tuple[str, ...], str, str]] = [
    (("business", "compliance", "contributor"), "Datasets", "datasets:catalog"),
    (("compliance",), "New dataset", "datasets:new"),
    (("contributor",), "My data", "datasets:dashboard"),
]
