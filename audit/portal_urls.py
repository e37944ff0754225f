"""Portal pages of audit. NAV lists (roles, label, url name) for the role-aware navigation."""

from django.urls import URLPattern, URLResolver, path

from audit import portal

app_name = "audit"
urlpatterns: list[URLPattern | URLResolver] = [
    path("audit/", portal.events, name="events"),
    path("audit/events/<int:seq>/", portal.event_detail, name="event"),
    path("audit/queries/", portal.query_lookup, name="query-lookup"),
    path("audit/queries/<int:query_id>/", portal.query_story, name="query"),
    path("audit/budget/", portal.budget, name="budget"),
    path("audit/credentials/", portal.credentials, name="credentials"),
    path("audit/verify/", portal.verification, name="verify"),
    path("audit/export.csv", portal.export_csv, name="export-csv"),
    path("audit/export.jsonl", portal.export_jsonl, name="export-jsonl"),
    path("audit/export/log.jsonl", portal.export_log, name="export-log"),
    path("audit/public-key.pem", portal.public_key, name="public-key"),
]
NAV: list[tuple[tuple[str, ...], str, str]] = [
    (("compliance",), "Audit log", "audit:events"),
    (("compliance",), "Budget use", "audit:budget"),
    (("compliance",), "Credential checks", "audit:credentials"),
    (("compliance",), "Log verification", "audit:verify"),
]
