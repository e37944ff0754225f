"""Identity fixtures: a demo issuer the registry trusts, wallets, requests, and a local HTTPS
server (with a test CA made by openssl) that serves status lists."""

from __future__ import annotations

import http.server
import json
import shutil
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from rest_framework.test import APIClient

from identity import selectors, services, statuslist
from identity.issuer.core import Issuer
from identity.wallet.core import Wallet


@pytest.fixture(autouse=True)
def _fresh_status_cache() -> Iterator[None]:
    statuslist.CACHE.clear()
    yield
    statuslist.CACHE.clear()


@pytest.fixture(scope="session")
def issuer_key() -> str:
    return Issuer.generate().key


@pytest.fixture
def issuer(issuer_key: str) -> Issuer:
    return Issuer(key=issuer_key, name="Test personhood issuer")


@pytest.fixture
def trusted_issuer(db: Any, issuer: Issuer) -> Any:
    return services.trusted_issuer_create(
        did=issuer.did, name=issuer.name, credential_types=["PersonhoodCredential"], actor=None
    )


@pytest.fixture
def wallet() -> Wallet:
    return Wallet.generate()


@pytest.fixture
def presentation_request(db: Any) -> Any:
    return services.presentation_request_create()


@pytest.fixture
def request_object(presentation_request: Any) -> dict[str, Any]:
    return selectors.request_object(presentation_request)


def post_vp_token(request_obj: dict[str, Any], vp_token: Any) -> Any:
    """POST {"vp_token": ...} to the request's response_uri through the real API."""
    path = urlsplit(request_obj["response_uri"]).path
    return APIClient().post(
        path, data=json.dumps({"vp_token": vp_token}), content_type="application/json"
    )


@pytest.fixture
def submit() -> Callable[[dict[str, Any], Any], Any]:
    return post_vp_token


# --- a local HTTPS server for status lists -----------------------------------------------------


class StatusServer:
    def __init__(self, root: Path, port: int) -> None:
        self.root = root
        self.port = port
        self.requests: list[str] = []

    def url(self, name: str) -> str:
        return f"https://localhost:{self.port}/{name}"

    def publish(self, name: str, document: dict[str, Any] | str | bytes) -> str:
        data = (
            document
            if isinstance(document, bytes)
            else (document if isinstance(document, str) else json.dumps(document)).encode()
        )
        (self.root / name).write_bytes(data)
        return self.url(name)

    def unpublish(self, name: str) -> None:
        (self.root / name).unlink(missing_ok=True)


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="session")
def test_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throwaway CA and a localhost certificate signed by it."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make the test CA")
    directory = tmp_path_factory.mktemp("ca")
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=Clean room test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )
    _openssl(
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
        cwd=directory,
    )
    (directory / "ext.cnf").write_text(
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
        "keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n"
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
        cwd=directory,
    )
    return directory


@pytest.fixture(scope="session")
def _https_server(
    test_ca: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StatusServer]:
    root = tmp_path_factory.mktemp("status-lists")
    holder: dict[str, StatusServer] = {}

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(root), **kwargs)

        def do_GET(self) -> None:  # noqa: N802
            holder["server"].requests.append(self.path)
            super().do_GET()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(test_ca / "server.pem", test_ca / "server.key")
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    server = StatusServer(root, httpd.server_address[1])
    holder["server"] = server
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield server
    httpd.shutdown()


@pytest.fixture
def status_server(_https_server: StatusServer, test_ca: Path, settings: Any) -> StatusServer:
    """The local HTTPS server, with the verifier allowed to reach it (tests only)."""
    settings.CLEANROOM_STATUS_LIST_ALLOW_PRIVATE = True
    settings.CLEANROOM_STATUS_LIST_CA_BUNDLE = str(test_ca / "ca.pem")
    settings.CLEANROOM_STATUS_LIST_TIMEOUT_SECONDS = 3
    _https_server.requests.clear()
    return _https_server


# --- SD-JWT VC / OpenID4VP ---------------------------------------------------------------------

PID_VCT = "urn:eudi:pid:1"


@pytest.fixture(scope="session")
def sd_issuer_state() -> dict[str, Any]:
    issuer = Issuer.generate(name="Test PID issuer")
    issuer.sd_jwt_signing_key()
    return issuer.to_json()


@pytest.fixture
def sd_issuer(sd_issuer_state: dict[str, Any]) -> Issuer:
    """An SD-JWT VC issuer known by its key's did:jwk (no network needed)."""
    return Issuer.from_json(json.loads(json.dumps(sd_issuer_state)))


@pytest.fixture
def sd_trusted(db: Any, sd_issuer: Issuer) -> Any:
    return services.trusted_issuer_create(
        did=sd_issuer.sd_jwt_issuer, name="Test PID issuer", vcts=[PID_VCT], actor=None
    )


@pytest.fixture
def holder() -> Wallet:
    return Wallet.generate()


def pid(issuer: Issuer, holder: Wallet, **kwargs: Any) -> str:
    """A PID-like SD-JWT VC for `holder` (birth date 1990-05-01 unless told otherwise)."""
    from datetime import date

    kwargs.setdefault("birthdate", date(1990, 5, 1))
    kwargs.setdefault("given_name", "Ada")
    return issuer.issue_sd_jwt(holder_jwk=holder.holder_jwk, **kwargs)


@pytest.fixture
def sd_request(db: Any) -> Any:
    return services.presentation_request_create(formats=["dc+sd-jwt"])


def post_form(request_obj: dict[str, Any], fields: dict[str, str]) -> Any:
    """POST an application/x-www-form-urlencoded answer (direct_post) to the response_uri."""
    from urllib.parse import urlencode

    path = urlsplit(request_obj["response_uri"]).path
    return APIClient().post(
        path, data=urlencode(fields), content_type="application/x-www-form-urlencoded"
    )


def answer(request_obj: dict[str, Any], vp_token: Any, *, state: str | None = None) -> Any:
    """Answer with a DCQL vp_token map as OpenID4VP 1.0 direct_post does."""
    if isinstance(vp_token, str):
        vp_token = {"onboarding_sd_jwt": [vp_token]}
    return post_form(
        request_obj,
        {"vp_token": json.dumps(vp_token), "state": request_obj["state"] if state is None else state},
    )


def sd_present(request_obj: dict[str, Any], credential: str, holder: Wallet, **kwargs: Any) -> str:
    """Our wallet's presentation of `credential` for the request (only what the DCQL asks)."""
    from identity import sdjwt

    kwargs.setdefault("paths", [("age_equal_or_over", "18")])
    kwargs.setdefault("nonce", request_obj["nonce"])
    kwargs.setdefault("audience", request_obj["client_id"])
    kwargs.setdefault("holder_key", holder.holder_signing_key())
    return sdjwt.present(credential, **kwargs)
