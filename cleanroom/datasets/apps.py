from django.apps import AppConfig


class DatasetsConfig(AppConfig):
    name = "cleanroom.datasets"
    label = "datasets"
