"""The audit log page reads like a log: newest first, payloads as fields, one id scheme
(a contributor is contributor:<pk> as actor and as subject), epsilon without 12 decimals."""

from __future__ import annotations

import re
from typing import Any

from django.test import Client

from audit.services import audit_record


def test_events_are_newest_first_with_readable_fields_and_one_id_scheme(
    compliance_user: Any, make_contributor: Any
) -> None:
    person = make_contributor()
    assert person.pk != person.user.pk  # the two ids differ: the page must not mix them
    audit_record(
        action="cleanroom.consent.given",
        actor=person.user,
        subject=f"contributor:{person.pk}",
        dataset="households",
        payload={"terms_version": 1, "privacy_cap": None},
    )
    audit_record(
        action="cleanroom.budget.charged",
        actor=None,
        subject="query:7",
        dataset="households",
        payload={"epsilon": "0.499999999999", "organization": 3, "state": "reserved"},
    )
    client = Client()
    client.force_login(compliance_user)

    page = client.get("/audit/").content.decode()

    seqs = [int(s) for s in re.findall(r'href="/audit/events/(\d+)/"', page)]
    assert seqs == sorted(seqs, reverse=True) and len(seqs) >= 2
    assert page.index("cleanroom.budget.charged") < page.index("cleanroom.consent.given")
    assert f"<td>contributor:{person.pk}</td>" in page
    assert f"<td>contributor:{person.user.pk}</td>" not in page
    assert "<dt>epsilon</dt><dd>0.5</dd>" in page and "0.499999999999" not in page
    assert "<dt>organization</dt><dd>organization:3</dd>" in page
    assert "<dt>privacy cap</dt><dd>—</dd>" in page
