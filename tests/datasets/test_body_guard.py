"""Large or unwanted bodies are refused before a byte of them is read (issue 11, defect 3).

Each request goes through Django's request handler (all middleware, CSRF checks on) with a body stream that counts what
is read from it: an anonymous or wrong-role POST to the portal upload page, or any body
over the limit, must be answered having read nothing.
"""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from django.conf import settings
from django.test import Client
from django.test.client import ClientHandler

from cleanroom.accounts.services import token_for
from cleanroom.datasets.models import Contribution

MB = 1024 * 1024


class CountingBody(io.RawIOBase):
    """A body of `size` bytes made up on demand; remembers how many were read."""

    def __init__(self, size: int, content: bytes = b"") -> None:
        self.size, self.content, self.read_bytes = size, content, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        count = min(len(buffer), self.size - self.read_bytes)
        start = self.read_bytes
        chunk = (self.content[start : start + count]).ljust(count, b"x")
        buffer[:count] = chunk
        self.read_bytes += count
        return count


def call(
    method: str,
    path: str,
    body: CountingBody,
    content_type: str,
    *,
    cookie: str = "",
    token: str = "",
) -> tuple[int, dict[str, str], bytes]:
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "wsgi.url_scheme": "http",
        "wsgi.input": body,
        "wsgi.errors": io.StringIO(),
        "CONTENT_TYPE": content_type,
        "CONTENT_LENGTH": str(body.size),
        "REMOTE_ADDR": "127.0.0.1",
    }
    if cookie:
        environ["HTTP_COOKIE"] = cookie
    if token:
        environ["HTTP_AUTHORIZATION"] = f"Token {token}"
    # The real handler and middleware, CSRF checks on (Django's test Client turns them off);
    # ClientHandler keeps the test's database connection open after the request.
    response = ClientHandler(enforce_csrf_checks=True)(environ)
    headers = {name: value for name, value in response.items()}
    return response.status_code, headers, response.content


def session_cookie(user: Any) -> str:
    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


MULTIPART = "multipart/form-data; boundary=XyZ"


@pytest.mark.django_db
def test_anonymous_200_mb_post_to_the_upload_page_is_answered_without_reading_it(
    dataset: Any,
) -> None:
    body = CountingBody(200 * MB)
    status, _, content = call("POST", "/datasets/households/upload/", body, MULTIPART)
    assert status == 413
    assert b"Payload too large" in content
    assert body.read_bytes == 0
    assert Contribution.objects.count() == 0


@pytest.mark.django_db
def test_anonymous_post_under_the_limit_is_sent_to_sign_in_unread(dataset: Any) -> None:
    body = CountingBody(5 * MB)
    status, headers, _ = call("POST", "/datasets/households/upload/", body, MULTIPART)
    assert status == 302
    assert headers["Location"].startswith("/sign-in/?next=/datasets/households/upload/")
    assert body.read_bytes == 0


@pytest.mark.django_db
def test_wrong_role_post_to_the_upload_page_is_refused_unread(
    dataset: Any, business_user: Any
) -> None:
    body = CountingBody(5 * MB)
    status, _, content = call(
        "POST",
        "/datasets/households/upload/",
        body,
        MULTIPART,
        cookie=session_cookie(business_user),
    )
    assert status == 403
    assert b"not available to your role" in content
    assert body.read_bytes == 0


@pytest.mark.django_db
def test_any_portal_page_of_a_role_checks_it_before_csrf_reads_the_form(
    dataset: Any, business_user: Any
) -> None:
    body = CountingBody(1 * MB)
    status, _, _ = call(
        "POST",
        "/datasets/households/consent/",
        body,
        "application/x-www-form-urlencoded",
        cookie=session_cookie(business_user),
    )
    assert status == 403
    assert body.read_bytes == 0


@pytest.mark.django_db
def test_anonymous_api_upload_is_refused_unread(dataset: Any) -> None:
    body = CountingBody(5 * MB)
    status, _, content = call("POST", "/api/v1/datasets/households/contributions/", body, MULTIPART)
    assert status == 401
    assert json.loads(content)["title"] == "Not authenticated"
    assert body.read_bytes == 0


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path", ["/api/v1/queries/", "/api/v1/auth/token/", "/api/v1/identity/presentation-requests/"]
)
def test_a_50_mb_json_body_gets_413_problem_details_unread(path: str, business_user: Any) -> None:
    body = CountingBody(50 * MB, b'{"dataset": "')
    status, headers, content = call(
        "POST", path, body, "application/json", token=token_for(user=business_user)
    )
    assert status == 413
    assert headers["Content-Type"] == "application/problem+json"
    problem = json.loads(content)
    assert problem["type"] == "payload-too-large"
    assert "20 MB" in problem["detail"]
    assert set(problem) == {"type", "title", "detail", "errors"}
    assert body.read_bytes == 0


@pytest.mark.django_db
def test_the_owner_uploads_through_the_same_path(dataset: Any, consented: Any) -> None:
    """The positive control: the guard lets the right role's body through, read in full."""
    person = consented()
    records = json.dumps(
        {
            "records": [
                {
                    "age": 34,
                    "region": "north",
                    "income": 1.5,
                    "household_size": 2,
                    "owns_home": True,
                }
            ]
        }
    ).encode()
    body = CountingBody(len(records), records)
    status, _, content = call(
        "POST",
        "/api/v1/datasets/households/contributions/",
        body,
        "application/json",
        token=token_for(user=person.user),
    )
    assert status == 201, content
    assert body.read_bytes == len(records)
    assert Contribution.objects.filter(contributor=person).count() == 1
