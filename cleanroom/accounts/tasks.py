"""A trivial task that proves a worker is up and reads the same database."""

from celery import shared_task

from cleanroom.accounts.models import User


@shared_task(name="cleanroom.ping", acks_late=True)
def ping(value: str) -> dict[str, object]:
    return {"pong": value, "users": User.objects.count()}
