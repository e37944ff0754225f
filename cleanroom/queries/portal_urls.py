"""Portal pages of queries. NAV lists (roles, label, url name) for the role-aware navigation."""

from django.urls import URLPattern, URLResolver, path

from cleanroom.queries import portal

app_name = "queries"
urlpatterns: list[URLPattern | URLResolver] = [
    path("queries/", portal.query_list, name="list"),
    path("queries/new/", portal.query_new, name="new"),
    path("queries/preview/", portal.query_preview, name="preview"),
    path("queries/review/", portal.review_queue, name="review"),
    path("queries/budget/<slug:slug>/", portal.budget, name="budget"),
    path("queries/<int:pk>/", portal.query_detail, name="detail"),
    path("queries/<int:pk>/status/", portal.query_status, name="status"),
    path(
        "queries/<int:pk>/download.<str:kind>",
        portal.query_download,
        name="download",
    ),
    path("queries/<int:pk>/approve/", portal.query_approve, name="approve"),
    path("queries/<int:pk>/reject/", portal.query_reject, name="reject"),
]
NAV: list[tuple[tuple[str, ...], str, str]] = [
    (("business",), "New query", "queries:new"),
    (("business",), "My queries", "queries:list"),
    (("compliance",), "Review queue", "queries:review"),
    (("compliance",), "All queries", "queries:list"),
]
