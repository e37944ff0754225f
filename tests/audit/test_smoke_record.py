import pytest

from audit.models import AuditEvent
from audit.services import audit_record


@pytest.mark.django_db
def test_record_chains(compliance_user) -> None:
    e = audit_record(
        action="cleanroom.query.approved",
        actor=compliance_user,
        subject="query:1",
        payload={"x": 1},
    )
    assert e.seq == AuditEvent.objects.count()
