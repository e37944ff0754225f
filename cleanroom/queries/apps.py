from django.apps import AppConfig


class QueriesConfig(AppConfig):
    name = "cleanroom.queries"
    label = "queries"
