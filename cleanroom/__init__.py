"""Clean room: a data clean room that pays the people whose data it is."""

from cleanroom.celery import app as celery_app

__all__ = ["celery_app"]
